"""Model-level figures that do not depend on the backend: parameters and FLOPs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelFacts:
    params: int
    param_bytes: int
    flops_per_sample: int


def model_facts(model: nn.Module, example: torch.Tensor) -> ModelFacts:
    """Count on one sample at the case's size; ``example`` is a (1, C, H, W) batch."""
    params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(example)
    return ModelFacts(
        params=params, param_bytes=param_bytes, flops_per_sample=int(counter.get_total_flops())
    )
