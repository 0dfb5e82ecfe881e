"""Numeric precisions the matrix spans, each with its agreement tolerance vs eager fp32, and the
calibration recipe of the static int8 builds.

Tolerances live here and nowhere else, so loosening one is a one-line, reviewed change. How each
backend realizes a precision is the backend's business (``medgate.backends.torch_precision``
for the PyTorch backends, ``medgate.backends.onnx_artifacts`` for ONNX Runtime); what counts as
"close enough to fp32" is decided here, once, for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    """``max_logit_delta`` is relative: max |logit - reference| / max(1, max |reference|)."""

    name: str
    min_top1_agreement: float
    max_logit_delta: float
    summary: str


PRECISIONS: dict[str, Precision] = {
    # Different fp32 kernels (BN folded by freeze, ORT's fused convs) reorder sums: ~1e-5 relative.
    "fp32": Precision("fp32", 0.99, 1e-3, "float32 weights and activations"),
    # 10 mantissa bits: ~1e-3 relative per op, a few e-3 after a deep network.
    "fp16": Precision("fp16", 0.98, 3e-2, "float16 weights and activations (CUDA; ORT graph)"),
    # 7 mantissa bits: an order of magnitude coarser than fp16.
    "bf16": Precision("bf16", 0.95, 1e-1, "bfloat16 weights and activations"),
    # Weights (and, for ORT, activations per batch) rounded to 256 levels; near-ties may flip.
    "int8-dynamic": Precision(
        "int8-dynamic", 0.90, 2.5e-1, "int8 weights, activation scales computed per batch"
    ),
    "int8-static": Precision(
        "int8-static", 0.90, 2.5e-1, "int8 weights and activations, scales from calibration"
    ),
}


@dataclass(frozen=True)
class CalibrationRecipe:
    """How static int8 scales are chosen. Part of the quantized artifact's cache key.

    Calibration reads the ``val`` split, never ``test``: the agreement and accuracy checks run on
    ``test``, and scales fitted to those very images would flatter them.
    """

    split: str = "val"
    samples: int = 128
    batch: int = 16
    method: str = "minmax"

    @property
    def key(self) -> str:
        return f"{self.split}-{self.samples}-{self.batch}-{self.method}"


CALIBRATION = CalibrationRecipe()
