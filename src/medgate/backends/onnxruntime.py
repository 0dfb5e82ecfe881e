"""ONNX Runtime: the CPU execution provider on ``cpu``, the CUDA execution provider on ``cuda``.

``onnxruntime`` is imported inside, so a machine without it (or without onnxruntime-gpu's CUDA
provider) skips these cases with a reason. Inputs and outputs go through an IOBinding on the
session's device, so on CUDA the timed rounds measure the graph, not a host-to-device copy of the
input (the PyTorch backends also place inputs before timing).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.backends.onnx_artifacts import (
    CONVERSION_MODULES,
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    onnx_artifact,
)
from medgate.core.files import sha256_file
from medgate.core.matrix import Case
from medgate.core.registry import Unsupported, register_backend


class OnnxRuntimeSession(Session):
    def __init__(self, inference: Any, context: BuildContext, artifact: Any) -> None:
        super().__init__(context.case.device, artifact)
        self.inference = inference
        self.binding = inference.io_binding()
        self._bound: Any = None
        self._threads = context.threads

    def content_key(self) -> str | None:
        """The graph's bytes, the ORT build, the threads and the session options set here (this
        module's code), on the CPU provider only: its kernels are deterministic for a given
        thread count, where a GPU provider may pick kernels by timing."""
        import onnxruntime as ort

        if self.inference.get_providers() != ["CPUExecutionProvider"] or self.artifact is None:
            return None
        options = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
        return (
            f"onnxruntime {ort.__version__} cpu threads={self._threads} options={options} "
            f"graph={sha256_file(Path(self.artifact))}"
        )

    def place(self, batch: torch.Tensor) -> Any:
        import onnxruntime as ort

        array = np.ascontiguousarray(batch.numpy())
        return ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def run(self, placed: Any) -> torch.Tensor:
        # The timed rounds pass the same placed batch every time: bind it (and an output sized
        # for it, which ORT then reuses) once, not per round.
        if placed is not self._bound:
            self.binding.bind_ortvalue_input(INPUT_NAME, placed)
            self.binding.bind_output(OUTPUT_NAME, self.device)
            self._bound = placed
        self.inference.run_with_iobinding(self.binding)
        return torch.from_numpy(self.binding.copy_outputs_to_cpu()[0])

    def synchronize(self) -> None:
        # run_with_iobinding returns once the provider's stream is done.
        return None


@cache
def _warm_build(precision: str) -> None:
    """Import once per process what a build on ``precision``'s path imports lazily, and run the
    exporter once on a tiny network (its first call loads the exporter's own modules): paid
    here, not by the first build the memory lane measures."""
    import onnxruntime  # noqa: F401

    for module in CONVERSION_MODULES[precision]:
        importlib.import_module(module)
    with tempfile.TemporaryDirectory(prefix="medgate-warm-") as directory:
        network = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()).eval()
        export_onnx(network, torch.zeros(1, 1, 8, 8), Path(directory) / "warm.onnx")


@register_backend
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    providers: ClassVar[dict[str, str]] = {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
    }
    unsupported = (
        Unsupported(
            precision="bf16",
            reason="onnxruntime has no bf16 Conv kernels; its float16 converter targets fp16",
        ),
        Unsupported(
            precision="int8-dynamic",
            device="cuda",
            reason="quantize_dynamic emits ConvInteger, which the CUDA execution provider lacks",
        ),
    )

    def unavailable_reason(self, case: Case) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install -e '.[cpu]' or '.[cuda]')"
        import onnxruntime as ort

        provider = self.providers[case.device]
        if provider not in ort.get_available_providers():
            return (
                f"this onnxruntime build has no {provider} "
                f"(available: {', '.join(ort.get_available_providers())}); "
                "pip install -e '.[cuda]' brings onnxruntime-gpu"
            )
        return None

    def execution_providers(self, context: BuildContext) -> list[Any]:
        if context.case.device == "cuda":
            # The CUDA EP runs fp32 convolutions in TF32 unless told not to; fp32 means fp32.
            return [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0})]
        return [self.providers[context.case.device]]

    def graph_precision(self, precision: str) -> str:
        """Which ONNX graph (``onnx_artifacts``) this backend runs for a precision."""
        return precision

    def preload(self, case: Case) -> None:
        if case.device == "cpu":
            _warm_build(self.graph_precision(case.precision))

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        import onnxruntime as ort

        artifact = onnx_artifact(
            model, example, context, self.graph_precision(context.case.precision)
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = context.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # The CPU arena grows in chunks sized by its extend strategy and keeps them: with it on,
        # the memory lane would measure the arena's policy (and the order cases ran in), not the
        # graph. Off, each run's tensors are plain mallocs that memray sees come and go. The
        # CUDA provider keeps its own arena (the GPU figure is torch's, see test_memory.py).
        options.enable_cpu_mem_arena = False
        if context.quiet:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        inference = ort.InferenceSession(
            str(artifact), sess_options=options, providers=self.execution_providers(context)
        )
        return OnnxRuntimeSession(inference, context, artifact)
