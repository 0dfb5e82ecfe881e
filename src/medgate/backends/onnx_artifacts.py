"""The ONNX graph each precision ships: export, float16 conversion, dynamic and static int8.

Every artifact is written atomically under a name keyed by model, size, checkpoint and recipe
(``BuildContext.artifact_key``), and built once per run: the ONNX Runtime and TensorRT sessions
of the latency, throughput and agreement tests share it.

The fp32 export is redone in every run, into the run's artifact directory: it is cheap, and it
is the one step that reads the model's code, whose every input (``forward()``, an environment
variable it reads, a library it calls) no key could list. What is derived from it (the fp16,
pre-processed and int8 graphs: the quantizer's minutes) is kept across runs in
``BuildContext.cache_dir`` under a key of all it depends on: the exported graph's bytes, the
calibration tensors, this module's code and the versions of torch, onnx and onnxruntime. A change
to any of them is a new key, so a stale graph is never served.

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

import hashlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from medgate.backends.base import BuildContext
from medgate.core.files import sha256_file
from medgate.core.steps import step

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


#: Cached graphs unused for this long are deleted when a new one is written beside them.
CACHE_MAX_AGE_S = 14 * 24 * 3600


def _staged(path: Path, write: Callable[[Path], None], kind: str) -> Path:
    """Run ``write`` on a temporary path beside ``path`` and rename it into place."""
    if path.exists():
        # The mtime of a cached graph is when it was last used: what pruning goes by.
        os.utime(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        staged = Path(scratch) / path.name
        with step(kind):
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

    return _staged(path, write, "export")


def _float16(source: Path, path: Path, context: BuildContext) -> Path:
    def write(staged: Path) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(converted, str(staged))

    return _staged(path, write, "convert")


def _preprocessed(source: Path, context: BuildContext) -> Path:
    """ORT's recommended pre-quantization pass (shape inference + graph clean-up), once."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = _derived_path(source, context, "preprocessed")
    return _staged(
        path,
        lambda staged: quant_pre_process(str(source), str(staged), skip_symbolic_shape=True),
        "convert",
    )


def _dynamic_int8(source: Path, path: Path, context: BuildContext) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _preprocessed(source, context)
    return _staged(
        path,
        lambda staged: quantize_dynamic(str(prepared), str(staged), weight_type=QuantType.QInt8),
        "convert",
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
    prepared = _preprocessed(source, context)
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

    return _staged(path, write, "calibrate")


#: The modules each graph's build imports when it first runs.
CONVERSION_MODULES: dict[str, tuple[str, ...]] = {
    "fp32": ("onnx",),
    "fp16": ("onnx", "onnxruntime.transformers.float16"),
    "int8-dynamic": ("onnxruntime.quantization", "onnxruntime.quantization.shape_inference"),
    "int8-static": ("onnxruntime.quantization", "onnxruntime.quantization.shape_inference"),
}

CONVERSIONS: dict[str, Callable[[Path, Path, BuildContext], Path]] = {
    "fp16": _float16,
    "int8-dynamic": _dynamic_int8,
    "int8-static": _static_int8,
}


@cache
def _build_code() -> str:
    """What builds a derived graph besides its inputs: this module and the libraries it calls
    (torch reaches the key through the exported graph's bytes)."""
    import onnx
    import onnxruntime

    libraries = f"onnx=={onnx.__version__}|onnxruntime=={onnxruntime.__version__}"
    return hashlib.sha256(Path(__file__).read_bytes() + libraries.encode()).hexdigest()


def _tensors_sha256(tensors: Iterator[torch.Tensor] | tuple[torch.Tensor, ...]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous()
        digest.update(f"{flat.dtype}|{tuple(flat.shape)}|".encode())
        digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def derived_key(source: Path, context: BuildContext, kind: str) -> str:
    """Everything a graph derived from ``source`` depends on: the source's bytes, the build code
    and library versions, and for static int8 the calibration tensors and recipe."""
    memo_key = f"derived-key:{source}:{kind}"
    if memo_key not in context.memo:
        parts = [kind, sha256_file(source), _build_code()]
        if "static" in kind:
            parts += [context.calibration_recipe.key, _tensors_sha256(tuple(context.calibration()))]
        context.memo[memo_key] = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    return str(context.memo[memo_key])


def _derived_path(source: Path, context: BuildContext, kind: str) -> Path:
    """Where the ``kind`` graph derived from ``source`` is built: in the persistent cache under
    its content key when the context has one, else beside the source, for this run only."""
    if context.cache_dir is None:
        return source.with_name(f"{context.artifact_key(kind)}.onnx")
    name = f"{context.artifact_key(kind)}-{derived_key(source, context, kind)}.onnx"
    return context.cache_dir / name


def prune_cache(directory: Path, max_age_s: float = CACHE_MAX_AGE_S) -> list[Path]:
    """Delete the cached graphs in ``directory`` unused for ``max_age_s``; return them."""
    if not directory.is_dir():
        return []
    cutoff = time.time() - max_age_s
    pruned = []
    for path in directory.glob("*.onnx"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                pruned.append(path)
        except FileNotFoundError:
            continue
    return pruned


def onnx_artifact(
    model: nn.Module, example: torch.Tensor, context: BuildContext, precision: str
) -> Path:
    """The graph of ``precision``: exported in this run, derived graphs from the cache."""
    directory = context.artifact_dir
    fp32 = export_onnx(model, example, directory / f"{context.artifact_key('fp32')}.onnx")
    if precision == "fp32":
        return fp32
    path = _derived_path(fp32, context, precision)
    if context.cache_dir is not None and not path.exists():
        prune_cache(context.cache_dir)
    return CONVERSIONS[precision](fp32, path, context)
