"""A zoo small enough for medgate's own tests: trains in about a second, runs in microseconds.

``MEDGATE_TINY_WORK`` repeats the middle convolution that many times (same weights, so the same
checkpoint): a controllable slowdown for tests that must see the gate fail.
``MEDGATE_TINY_BALLAST`` bytes are held alive through every forward, and
``MEDGATE_TINY_BUILD_BALLAST`` bytes are a buffer of the model that every session build copies:
controllable memory regressions of the ``inference`` and ``session`` figures.
"""

from __future__ import annotations

import os

import torch
from tiny_data import RECIPE
from torch import nn

from medgate import ModelSpec, StagedClassifier, TrainRecipe, register_model

SPEC = ModelSpec(
    name="tiny_cnn",
    task="bright square or not",
    classes=RECIPE.classes,
    positive_class="square",
    input_sizes=(32, 16),
    in_chans=1,
    mean=(0.3,),
    std=(0.3,),
    dataset=RECIPE,
    train=TrainRecipe(train_size=16, epochs=3, batch_size=16, lr=1e-2),
)


class RepeatedConv(nn.Module):
    def __init__(self, channels: int, repeats: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.repeats = repeats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.repeats):
            x = torch.relu(self.conv(x)) * 0.5 + x * 0.5
        return x


class BallastedClassifier(StagedClassifier):
    def __init__(
        self, features: nn.Module, head: nn.Module, ballast_bytes: int, build_ballast_bytes: int
    ) -> None:
        super().__init__(features, head)
        self.ballast_bytes = ballast_bytes
        # Not persistent: the checkpoint stays the same, every copy of the module carries it.
        self.register_buffer(
            "build_ballast", torch.ones(build_ballast_bytes, dtype=torch.uint8), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ballast = torch.ones(self.ballast_bytes, dtype=torch.uint8) if self.ballast_bytes else None
        logits = super().forward(x)
        del ballast
        return logits


@register_model(SPEC)
def tiny_cnn() -> nn.Module:
    repeats = int(os.environ.get("MEDGATE_TINY_WORK", "1"))
    ballast = int(os.environ.get("MEDGATE_TINY_BALLAST", "0"))
    build_ballast = int(os.environ.get("MEDGATE_TINY_BUILD_BALLAST", "0"))
    features = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        RepeatedConv(32, repeats),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return BallastedClassifier(features, nn.Linear(32, 2), ballast, build_ballast)
