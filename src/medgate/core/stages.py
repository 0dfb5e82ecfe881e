"""The two-stage shape of the seed classifiers: a feature extractor, then a head.

Keeping the stages as named submodules lets the gate time them apart and locate a regression.
"""

from __future__ import annotations

import torch
from torch import nn


class StagedClassifier(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x))
        return logits
