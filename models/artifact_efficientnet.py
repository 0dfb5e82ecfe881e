"""The video/MRI quality seed: EfficientNet B0-B3, clean vs artifact (the positive class).

B0 is in the default matrix; B1-B3 are registered for the efficiency-frontier analysis and run
when selected (``--models 'artifact_efficientnet_*'``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models as tv

from fixtures import mri_artifact
from medgate import ModelSpec, StagedClassifier, TrainRecipe, register_model

VARIANTS: dict[str, Callable[..., tv.EfficientNet]] = {
    "b0": tv.efficientnet_b0,
    "b1": tv.efficientnet_b1,
    "b2": tv.efficientnet_b2,
    "b3": tv.efficientnet_b3,
}


def _register(variant: str, build: Callable[..., tv.EfficientNet]) -> None:
    spec = ModelSpec(
        name=f"artifact_efficientnet_{variant}",
        task="acquisition artifact in an MRI frame",
        classes=mri_artifact.CLASSES,
        positive_class="artifact",
        input_sizes=(224, 192),
        in_chans=3,
        mean=(0.3, 0.3, 0.3),
        std=(0.25, 0.25, 0.25),
        dataset=mri_artifact.RECIPE,
        train=TrainRecipe(train_size=112, epochs=4, optimizer="sgd", lr=0.05, weight_decay=4e-5),
        in_default_matrix=variant == "b0",
        notes="trained at 112 px on CPU to keep the recipe in minutes",
    )

    @register_model(spec)
    def builder() -> nn.Module:
        backbone = build(weights=None, num_classes=len(spec.classes))
        features = nn.Sequential(backbone.features, backbone.avgpool, nn.Flatten())
        return StagedClassifier(features, backbone.classifier)

    builder.__qualname__ = f"artifact_efficientnet_{variant}"


for _variant, _build in VARIANTS.items():
    _register(_variant, _build)
