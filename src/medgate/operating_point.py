"""A screen's operating point: the decision threshold that calls a target share of positives.

A classifier trained with cross-entropy decides by argmax, which puts its threshold wherever the
loss left it; for a screen that threshold is a clinical choice, made on data the model did not
train on. Here it is chosen on the validation split, per input size (each size's logits are
shifted differently), as the threshold on the positive class's margin (its logit minus the largest
other) that calls at least the target share of the split's positives positive, and is folded into
the classifier's bias. Folded in, it is part of the weights: every backend and precision exports,
quantizes and compiles it like any bias, and argmax still decides, so nothing downstream needs to
know it exists. The ranking of the scores, and so AUROC, is unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from medgate.core.registry import ModelSpec
from medgate.data import Split, preprocess
from medgate.size_state import SizeState


class OperatingPointError(ValueError):
    """A model or split an operating point cannot be set on; the message says the fix."""


def classifier_bias(model: nn.Module, num_classes: int) -> str:
    """The state-dict name of the bias of ``model``'s classifier: its last ``nn.Linear`` with one
    output per class."""
    heads = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == num_classes
    ]
    if not heads:
        raise OperatingPointError(
            f"{type(model).__name__} has no nn.Linear with {num_classes} outputs to fold an "
            "operating point into; drop target_sensitivity from its recipe"
        )
    head = model.get_submodule(heads[-1])
    assert isinstance(head, nn.Linear)
    if head.bias is None:
        raise OperatingPointError(
            f"{type(model).__name__}'s classifier {heads[-1]!r} has no bias to fold an operating "
            "point into; give it bias=True or drop target_sensitivity from its recipe"
        )
    return f"{heads[-1]}.bias" if heads[-1] else "bias"


def positive_margins(logits: torch.Tensor, positive_index: int) -> np.ndarray:
    """Per sample, the positive class's logit minus the largest other logit: argmax calls the
    sample positive exactly when this is positive."""
    others = torch.cat([logits[:, :positive_index], logits[:, positive_index + 1 :]], dim=1)
    return (logits[:, positive_index] - others.max(dim=1).values).double().numpy()


def threshold(margins: np.ndarray, positive: np.ndarray, target: float) -> float:
    """The margin threshold that calls at least ``target`` of the positives positive and, of
    those thresholds, calls the fewest samples positive: halfway between the weakest positive it
    must call and the next lower margin of any sample, so no sample sits on it."""
    scores = np.sort(margins[positive])[::-1]
    if scores.size == 0:
        raise OperatingPointError("the split has no positive sample to set a sensitivity on")
    weakest = scores[max(1, math.ceil(target * scores.size - 1e-9)) - 1]
    below = margins[margins < weakest]
    gap = (weakest - below.max()) / 2 if below.size else 1.0
    return float(weakest - gap)


@torch.no_grad()
def fold(
    model: nn.Module, spec: ModelSpec, split: Split, size: int, target: float, batch: int = 64
) -> tuple[SizeState, float]:
    """The bias of ``model``'s classifier with the operating point at ``size`` folded in, and
    the threshold it moved the positive class's logit by. ``model``, in eval mode, is left
    untouched."""
    bias_name = classifier_bias(model, spec.num_classes)
    logits = torch.cat(
        [
            model(preprocess(split.images[i : i + batch], size, spec.mean, spec.std, spec.in_chans))
            for i in range(0, len(split), batch)
        ]
    )
    positive = np.asarray(split.labels).reshape(-1) == spec.positive_index
    shift = threshold(positive_margins(logits.float(), spec.positive_index), positive, target)
    bias = model.get_parameter(bias_name).detach().clone()
    bias[spec.positive_index] -= shift
    return {bias_name: bias}, shift
