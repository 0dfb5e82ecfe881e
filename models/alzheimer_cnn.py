"""The Alzheimer seed: an 8-conv CNN with BatchNorm at 256 px, four stages of dementia.

Takes one (grayscale) channel. The seed shrank its input 256 -> 224 -> 192 to save time; all
three sizes are in the matrix so the accuracy cost of that shows beside the speed gain.
"""

from __future__ import annotations

from torch import nn

from fixtures import alzheimer_mri
from medgate import KnownDisagreement, ModelSpec, StagedClassifier, TrainRecipe, register_model

SPEC = ModelSpec(
    name="alzheimer_cnn",
    task="dementia stage from an axial MRI slice",
    classes=alzheimer_mri.CLASSES,
    positive_class="moderate_demented",
    input_sizes=(256, 224, 192),
    in_chans=1,
    mean=(0.3,),
    std=(0.25,),
    dataset=alzheimer_mri.RECIPE,
    # Each batch at one of the three sizes: its filters then see every scale the matrix serves,
    # which each size's BatchNorm statistics alone do not give (README, "Every size").
    train=TrainRecipe(train_size=192, train_sizes=(192, 224, 256), epochs=6),
    known_disagreements=(
        KnownDisagreement(
            "onnxruntime-int8-static-192",
            "ORT's VNNI int8 kernels (a Zen 4) call 5 fewer moderate-demented test images than "
            "the per-image baseline recorded on an AVX2 CPU (sensitivity -5 pp vs baseline)",
            gates=("accuracy",),
            cpu_isa=("avx512_vnni",),
            stored_baseline=True,
        ),
    ),
)

WIDTHS = (16, 32, 32, 64, 64, 128, 128, 128)
POOL_AFTER = frozenset({1, 3, 5})


def conv_block(in_chans: int, out_chans: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


@register_model(SPEC)
def alzheimer_cnn() -> nn.Module:
    layers: list[nn.Module] = []
    in_chans = SPEC.in_chans
    for index, width in enumerate(WIDTHS):
        layers.append(conv_block(in_chans, width, stride=2 if index == 0 else 1))
        if index in POOL_AFTER:
            layers.append(nn.MaxPool2d(2))
        in_chans = width
    features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(in_chans, len(SPEC.classes)))
    return StagedClassifier(features, head)
