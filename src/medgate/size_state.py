"""What a checkpoint holds per input size it serves, beside the one set of weights.

A CNN's BatchNorm running statistics are those of the size it last trained at. Resized to another
size, the same image gives other activation statistics (an upsampled radiograph has smoother
edges), and normalizing them with the wrong mean and variance shifts the logits: measured on the
bundled zoo, a model at chance at 224 px with the statistics of 64 px reached within a few
points of its best with statistics of 224 px, its weights unchanged (the train/test resolution
discrepancy of Touvron et al., "FixRes", 2019). So a checkpoint carries, for every (model, size)
that loads it, the state-dict entries that differ at that size: the BatchNorm statistics
estimated on the training split, and the classifier's bias where the recipe fixes an operating
point (``medgate.operating_point``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from medgate.core.registry import ModelSpec, get_spec, list_models, registered_in
from medgate.data import preprocess

#: State-dict entries of one (model, size), by their state-dict name.
SizeState = dict[str, torch.Tensor]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def size_key(model: str, size: int) -> str:
    return f"{model}@{size}"


def sharing(spec: ModelSpec) -> list[ModelSpec]:
    """``spec`` and the models registered beside it that load its weights (``weights_from``).

    Only those registered by the same module: the training worker imports the module of
    ``spec``'s builder alone, and the checkpoint key must be the same there as in the process
    that asked for it. A model loading the weights from elsewhere (a conftest) gets the state
    dict's own entries, those of ``train_size``.
    """
    module = registered_in(spec.name)
    return [spec] + [
        get_spec(name)
        for name in list_models()
        if name != spec.name
        and get_spec(name).weights_from == spec.name
        and registered_in(name) == module
    ]


def served_sizes(spec: ModelSpec) -> list[tuple[str, int]]:
    """Every (model, input size) the checkpoint of ``spec`` is loaded at."""
    return sorted({(other.name, size) for other in sharing(spec) for size in other.input_sizes})


def has_norms(model: nn.Module) -> bool:
    return any(isinstance(module, _NORMS) for module in model.modules())


@torch.no_grad()
def calibrate(
    model: nn.Module, spec: ModelSpec, images: np.ndarray, size: int, batch: int
) -> SizeState:
    """The running mean and variance of every BatchNorm of ``model`` over ``images`` at ``size``.

    An equal-weight average over every batch (momentum None), not an exponential one: the
    statistics are of the whole split, not of its last batches. ``model`` is left untouched.
    """
    probe = copy.deepcopy(model)
    norms = {name: m for name, m in probe.named_modules() if isinstance(m, _NORMS)}
    for norm in norms.values():
        norm.reset_running_stats()
        norm.momentum = None
    probe.train()
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        probe(preprocess(chunk, size, spec.mean, spec.std, spec.in_chans))
    stats: SizeState = {}
    for name, norm in norms.items():
        assert norm.running_mean is not None
        assert norm.running_var is not None
        stats[f"{name}.running_mean"] = norm.running_mean.clone()
        stats[f"{name}.running_var"] = norm.running_var.clone()
    return stats


@torch.no_grad()
def apply(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Overwrite entries of ``model``'s state dict with ``state``; every name must be one of
    them, with the same shape."""
    entries = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    unknown = sorted(name for name in state if name not in entries)
    if unknown:
        raise ValueError(
            f"{source}: holds {unknown[0]!r}, which the model has no parameter or buffer for; "
            "point the model at a checkpoint of its own architecture"
        )
    for name, value in state.items():
        if entries[name].shape != value.shape:
            raise ValueError(
                f"{source}: {name!r} has shape {tuple(value.shape)}, the model's "
                f"{tuple(entries[name].shape)}; point the model at a checkpoint of its own "
                "architecture"
            )
        entries[name].copy_(value)
