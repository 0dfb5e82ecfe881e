"""The ONNX graph each precision ships: export, float16 conversion, dynamic and static int8.

Every artifact is written atomically into the run's artifact directory under a name keyed by
model, size, checkpoint and recipe (``BuildContext.artifact_key``), and built once per run:
the ONNX Runtime and TensorRT sessions of the latency, throughput and agreement tests share it.

- ``fp16``: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types``.
  It ships inside onnxruntime (and onnxruntime-gpu), so it adds no dependency, and it is the same
  converter as onnxconverter-common's; fp32 inputs and logits at the graph boundary keep every
  session's ``place`` and the agreement check precision-agnostic.
- ``int8-dynamic``: ``quantize_dynamic`` (int8 weights; ConvInteger / MatMulInteger with
  activation scales computed per batch).
- ``int8-static``: ``quantize_static`` in QDQ format, per-channel int8 weights, uint8
  activations, MinMax scales from the calibration split (never the test split).
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from medgate.backends.base import BuildContext

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _staged(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write`` on a temporary path beside ``path`` and rename it into place."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        staged = Path(scratch) / path.name
        write(staged)
        staged.replace(path)
    return path


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export with a dynamic batch axis.

    The TorchScript-based exporter (``dynamo=False``) is used on purpose: it exports
    MobileNetV2 in 0.7 s where the dynamo exporter took 20 s here, and ORT optimizes both
    graphs to the same fused kernels.
    """

    def write(staged: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.cpu().eval(),
                (example.cpu(),),
                str(staged),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )

    return _staged(path, write)


def _float16(source: Path, path: Path, context: BuildContext) -> Path:
    def write(staged: Path) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(converted, str(staged))

    return _staged(path, write)


def _preprocessed(source: Path) -> Path:
    """ORT's recommended pre-quantization pass (shape inference + graph clean-up), once."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = source.with_name(source.stem + "-preprocessed.onnx")
    return _staged(
        path, lambda staged: quant_pre_process(str(source), str(staged), skip_symbolic_shape=True)
    )


def _dynamic_int8(source: Path, path: Path, context: BuildContext) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _preprocessed(source)
    return _staged(
        path,
        lambda staged: quantize_dynamic(str(prepared), str(staged), weight_type=QuantType.QInt8),
    )


#: Images per run of ORT's calibration session: its peak memory grows with it.
ORT_CALIBRATION_CHUNK = 4


def _static_int8(source: Path, path: Path, context: BuildContext) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, batches: Iterator[torch.Tensor]) -> None:
            self.batches = batches

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch.numpy()}

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    prepared = _preprocessed(source)
    case = context.case

    def write(staged: Path) -> None:
        batches = tqdm(
            context.calibration(),
            desc=f"calibrating {case.model}@{case.input_size} (ORT int8)",
            unit="batch",
            file=sys.stderr,
            leave=False,
        )
        # ONNX Runtime's calibration session holds every activation of the batch it runs:
        # EfficientNet-B0 at 224 px peaked at 4.3 GB with batches of 16, 1.2 GB with 4. MinMax
        # ranges are a min of mins and a max of maxes, so they are the same however the
        # images are batched.
        chunks = (chunk for batch in batches for chunk in batch.split(ORT_CALIBRATION_CHUNK))
        quantize_static(
            str(prepared),
            str(staged),
            Reader(chunks),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=methods[context.calibration_recipe.method],
        )

    return _staged(path, write)


CONVERSIONS: dict[str, Callable[[Path, Path, BuildContext], Path]] = {
    "fp16": _float16,
    "int8-dynamic": _dynamic_int8,
    "int8-static": _static_int8,
}


def onnx_artifact(
    model: nn.Module, example: torch.Tensor, context: BuildContext, precision: str
) -> Path:
    """The graph of ``precision``, built once per run."""
    directory = context.artifact_dir
    fp32 = export_onnx(model, example, directory / f"{context.artifact_key('fp32')}.onnx")
    if precision == "fp32":
        return fp32
    return CONVERSIONS[precision](
        fp32, directory / f"{context.artifact_key(precision)}.onnx", context
    )
