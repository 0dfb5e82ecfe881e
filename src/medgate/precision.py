"""Numeric precisions the matrix spans, each with its agreement tolerance vs eager fp32.

Tolerances live here and nowhere else, so loosening one is a one-line, reviewed change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    """``max_logit_delta`` is relative: max |logit - reference| / max(1, max |reference|)."""

    name: str
    min_top1_agreement: float
    max_logit_delta: float


PRECISIONS: dict[str, Precision] = {
    # Different fp32 kernels (BN folded by freeze, ORT's fused convs) reorder sums: ~1e-5 relative.
    "fp32": Precision("fp32", min_top1_agreement=0.99, max_logit_delta=1e-3),
}
