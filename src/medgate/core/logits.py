"""Logits no figure can be computed from: NaN or infinite ones, refused by name."""

from __future__ import annotations

import torch


class NonFiniteLogitsError(ValueError):
    """A model produced NaN or infinite logits: no metric of them means anything."""


def require_finite(logits: torch.Tensor, what: str) -> None:
    """Raise, naming ``what`` and how many samples, when any logit is NaN or infinite; sklearn
    would otherwise fail inside the AUROC and argmax would call NaN rows class 0."""
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        rows = int((~finite).reshape(finite.shape[0], -1).any(dim=1).sum())
        raise NonFiniteLogitsError(
            f"{what}: the model produced NaN or infinite logits for {rows} of "
            f"{logits.shape[0]} samples; check the export, the precision's range (fp16 "
            "overflows past 65504) or the checkpoint"
        )
