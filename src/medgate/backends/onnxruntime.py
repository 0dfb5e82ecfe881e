"""ONNX Runtime on the CPU execution provider, from a ``torch.onnx.export`` of the model.

``onnxruntime`` is imported inside, so a machine without it skips these cases with a reason.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.registry import register_backend


class OnnxRuntimeSession(Session):
    def __init__(self, inference: Any, artifact: Path) -> None:
        super().__init__("cpu", artifact)
        self.inference = inference
        self.input_name = inference.get_inputs()[0].name

    def place(self, batch: torch.Tensor) -> Any:
        return np.ascontiguousarray(batch.numpy())

    def run(self, placed: Any) -> torch.Tensor:
        return torch.from_numpy(self.inference.run(None, {self.input_name: placed})[0])


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export with a dynamic batch axis, once per run (sizes share nothing: one file each).

    The TorchScript-based exporter (``dynamo=False``) is used on purpose: it exports
    MobileNetV2 in 0.7 s where the dynamo exporter took 20 s here, and ORT optimizes both
    graphs to the same fused kernels.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        staged = Path(scratch) / path.name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.cpu().eval(),
                (example.cpu(),),
                str(staged),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        staged.replace(path)
    return path


@register_backend
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    devices = frozenset({"cpu"})

    def unavailable_reason(self, device: str) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        import onnxruntime as ort

        artifact = export_onnx(
            model, example, context.artifact_dir / f"{context.case.precision}.onnx"
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = context.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        inference = ort.InferenceSession(
            str(artifact), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return OnnxRuntimeSession(inference, artifact)
