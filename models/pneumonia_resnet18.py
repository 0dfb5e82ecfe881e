"""The pneumonia seed: ResNet-18, normal vs pneumonia (the positive class).

Also registers the seed's pathological variant, which took 64 px inputs and upsampled them to
224 px inside ``forward()``: same weights, ~12x the compute for no new information. It sits in the
matrix beside the native-64 model so the cost of that choice is measured, not argued.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from fixtures import chest_xray
from medgate import (
    AccuracyPolicy,
    Floor,
    KnownDisagreement,
    ModelSpec,
    StagedClassifier,
    TrainRecipe,
    Unsupported,
    register_model,
)

#: Measured on torch 2.14.1 + torchao 0.18.0: prepare_pt2e fails on ResNet-18's residual blocks.
PT2E_REJECTS_RESNET = Unsupported(
    backend="compile",
    precision="int8-static",
    reason="torchao 0.18's X86InductorQuantizer rejects ResNet-18's residual add "
    "('Input partition has more than one output node'); ONNX Runtime's int8-static runs it",
)

#: The seed targeted > 98 % sensitivity on full-resolution radiographs. Trained here by the
#: 3-epoch multi-scale CPU recipe (from 28-px PneumoniaMNIST, or the synthetic set), at its 90 %
#: operating point, fp32 reaches at 64 px
#: 88.5 % sensitivity / 0.943 AUROC on the real test split and 90.0 % / 0.907 on the bundled one
#: (measured, see the README), so a 98 % floor would fail every build. These floors hold every
#: backend and precision to a few points under what fp32 reaches at the size it was trained at.
FLOORS = (
    Floor("sensitivity", 0.85, cases="*-64", reason="pneumonia screen sensitivity floor"),
    Floor("auroc", 0.93, dataset="pneumoniamnist*", cases="*-64", reason="real-data AUROC floor"),
    Floor("auroc", 0.90, dataset="synthetic_*", cases="*-64", reason="bundled-data AUROC floor"),
)

SPEC = ModelSpec(
    name="pneumonia_resnet18",
    task="pneumonia from a frontal chest radiograph",
    classes=chest_xray.CLASSES,
    positive_class="pneumonia",
    input_sizes=(224, 128, 64),
    in_chans=3,
    mean=(0.4, 0.4, 0.4),
    std=(0.25, 0.25, 0.25),
    dataset=chest_xray.RECIPE,
    # Each batch at one of the three sizes: a 64 px radiograph upsampled to 224 shows the
    # filters a scale they never saw at 64, which each size's BatchNorm statistics alone do not
    # make up for (README, "Every size"). A screen: at every size the threshold calls 90 % of
    # the validation split's pneumonias, argmax's own threshold being wherever training left it.
    train=TrainRecipe(train_size=64, train_sizes=(64, 128, 224), epochs=3, target_sensitivity=0.9),
    smoke_size=64,
    unsupported=(PT2E_REJECTS_RESNET,),
    accuracy=AccuracyPolicy(floors=FLOORS),
    known_disagreements=(
        KnownDisagreement(
            "torchscript-bf16-64",
            "TorchScript bf16 at 64 px, where a CPU has native bf16 (a Zen 4): 5 of 400 test "
            "images lost vs fp32 (accuracy -1.25 pp, specificity -2.5 pp, tolerances 1 / 2 pp); "
            "eager bf16 stays within them",
            gates=("accuracy",),
            dataset="synthetic_*",
            cpu_isa=("avx512_bf16",),
        ),
        KnownDisagreement(
            "torchscript-bf16-128",
            "TorchScript bf16 at 128 px, where a CPU has native bf16 (a Zen 4): 5 normals lost, "
            "3 pneumonias gained vs fp32 (specificity 74.5 -> 72.0 %, tolerance 2 pp); eager "
            "bf16 stays within it",
            gates=("accuracy",),
            dataset="synthetic_*",
            cpu_isa=("avx512_bf16",),
        ),
        KnownDisagreement(
            "onnxruntime-int8-static-128",
            "ORT's VNNI int8 kernels (a Zen 4) at 128 px call 5 fewer pneumonias than the "
            "per-image baseline recorded on an AVX2 CPU (sensitivity 86.0 -> 83.5 %, tolerance "
            "1 pp); against fp32 in the same run -2.0 pp, TOO NOISY, not regressed",
            gates=("accuracy",),
            dataset="synthetic_*",
            cpu_isa=("avx512_vnni",),
            stored_baseline=True,
        ),
    ),
)

UPSAMPLE_SPEC = ModelSpec(
    name="pneumonia_resnet18_upsample224",
    task=SPEC.task + " (the seed's variant that upsamples 64 -> 224 in forward)",
    classes=SPEC.classes,
    positive_class=SPEC.positive_class,
    input_sizes=(64,),
    in_chans=SPEC.in_chans,
    mean=SPEC.mean,
    std=SPEC.std,
    dataset=SPEC.dataset,
    train=SPEC.train,
    weights_from=SPEC.name,
    unsupported=(PT2E_REJECTS_RESNET,),
)


def _staged_resnet18() -> StagedClassifier:
    backbone = resnet18(weights=None, num_classes=len(SPEC.classes))
    head = backbone.fc
    backbone.fc = nn.Identity()
    return StagedClassifier(backbone, head)


class UpsampleFeatures(nn.Module):
    def __init__(self, inner: nn.Module, size: int) -> None:
        super().__init__()
        self.inner = inner
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.inner(x)


class UpsampledResNet18(StagedClassifier):
    """Keeps ``features.inner`` / ``head`` keys loadable from the native model's checkpoint."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
        renamed = {
            key.replace("features.", "features.inner.", 1)
            if key.startswith("features.")
            else key: value
            for key, value in state_dict.items()
        }
        return super().load_state_dict(renamed, strict=strict, assign=assign)


@register_model(SPEC)
def pneumonia_resnet18() -> nn.Module:
    return _staged_resnet18()


@register_model(UPSAMPLE_SPEC)
def pneumonia_resnet18_upsample224() -> nn.Module:
    native = _staged_resnet18()
    return UpsampledResNet18(UpsampleFeatures(native.features, 224), native.head)
