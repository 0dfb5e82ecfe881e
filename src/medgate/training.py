"""The project's own training recipe, and the checkpoint cache it fills.

Latency must be measured on trained weights (random-init BatchNorm drives activations into
denormals), and nothing may be downloaded, so every zoo model is trained here, on CPU, from its
dataset. Training runs in a worker process on pinned kernels (``medgate.core.kernels``), so the same
recipe on the same data gives bit-identical tensors on any CPU and core count. Checkpoints are
cached under a key of everything that determines them, and identified by the SHA-256 of their
tensors (``weights_sha256``), never of the file's bytes (``torch.save`` writes a random
serialization id into every file).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from medgate.core.facts import model_facts
from medgate.core.kernels import KernelPin, pin_for
from medgate.core.machine import cpu
from medgate.core.registry import ModelSpec, create_model, get_spec, model_module
from medgate.data import Dataset, preprocess
from medgate.operating_point import OperatingPointError, fold
from medgate.size_state import SizeState, apply, calibrate, has_norms, served_sizes, size_key

RECIPE_FORMAT = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the fix."""


class TrainingError(RuntimeError):
    """The training worker failed; the message carries the end of what it printed."""


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of the CPU training recipe.

    ``train_sizes`` makes it multi-scale: each batch is drawn at one of these input sizes, so one
    checkpoint serves every size of the matrix (a CNN trained at one size loses its BatchNorm
    statistics and its receptive-field scale at the others). Without them it trains at
    ``train_size``, the size its split accuracies are reported at either way.

    ``target_sensitivity`` fixes a screen's operating point: at each size, the decision threshold
    that calls at least that share of the validation split's positives positive, folded into the
    classifier's bias (``medgate.operating_point``). Without it the model decides by argmax of
    what training left.
    """

    train_size: int
    train_sizes: tuple[int, ...] = ()
    epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    min_crop_scale: float = 0.8
    optimizer: Literal["adamw", "sgd"] = "adamw"
    hflip: bool = True
    seed: int = 0
    target_sensitivity: float | None = None

    def __post_init__(self) -> None:
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            raise ValueError(
                f"target_sensitivity {self.target_sensitivity} is not a share of positives; "
                "give a value in (0, 1], e.g. 0.9"
            )


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds: ``{"state_dict", "meta", "size_state"}``, or a bare state
    dict. ``size_state`` maps ``"<model>@<size>"`` to the state-dict entries that model takes at
    that input size: BatchNorm statistics, and the classifier's bias where the recipe sets an
    operating point (``medgate.size_state``)."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    size_state: dict[str, SizeState] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"state_dict": self.state_dict, "meta": self.meta, "size_state": self.size_state}

    @property
    def sha256(self) -> str:
        """The identity of the weights and of every size's entries."""
        tensors = dict(self.state_dict)
        for key, stats in self.size_state.items():
            tensors.update({f"{key}/{name}": value for name, value in stats.items()})
        return weights_sha256(tensors)


@dataclass(frozen=True)
class TrainResult:
    path: Path
    trained_now: bool


def checkpoint_key(spec: ModelSpec, dataset: Dataset, pin: KernelPin | None = None) -> str:
    model = create_model(spec.name)
    architecture = [(name, tuple(p.shape)) for name, p in model.state_dict().items()]
    fields = {
        "format": RECIPE_FORMAT,
        "model": spec.name,
        "architecture": architecture,
        "in_chans": spec.in_chans,
        "mean": spec.mean,
        "std": spec.std,
        "dataset_sha256": dataset.sha256,
        "recipe": asdict(spec.train),
        "served": served_sizes(spec),
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "kernels": (pin or pin_for(cpu())).key(),
    }
    text = json.dumps(fields, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_path(spec: ModelSpec, dataset: Dataset, cache_dir: Path) -> Path:
    return cache_dir / "checkpoints" / f"{spec.name}-{checkpoint_key(spec, dataset)}.pt"


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The identity of a set of weights: names, dtypes, shapes and values, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    return read_checkpoint(path).sha256


def training_flops(spec: ModelSpec, dataset: Dataset) -> int:
    """Forward FLOPs the recipe spends over all its epochs: what orders a cold run's training,
    cheapest first (backward costs a fixed multiple of it, so the order is the same)."""
    recipe = spec.train
    sizes = recipe.train_sizes or (recipe.train_size,)
    with torch.random.fork_rng(devices=[]):
        model = create_model(spec.name).eval()
    per_sample = [
        model_facts(model, torch.zeros(1, spec.in_chans, size, size)).flops_per_sample
        for size in sizes
    ]
    return recipe.epochs * len(dataset.split("train")) * sum(per_sample) // len(sizes)


def ensure_checkpoint(
    spec: ModelSpec, dataset: Dataset, cache_dir: Path, stream: IO[str] | None = None
) -> TrainResult:
    """Return the cached checkpoint for ``spec`` on ``dataset``, training it if missing."""
    path = checkpoint_path(spec, dataset, cache_dir)
    if path.exists():
        return TrainResult(path=path, trained_now=False)
    train_pinned(spec, dataset, path, stream=stream)
    return TrainResult(path=path, trained_now=True)


def train_pinned(
    spec: ModelSpec, dataset: Dataset, path: Path, stream: IO[str] | None = None
) -> None:
    """Train ``spec`` on ``dataset`` in a worker on the pinned kernels and save it to ``path``.

    The worker imports the module that registered the model, so the spec it trains is the
    registered one; a spec changed in this process only is refused (its key would not match).
    """
    pin = pin_for(cpu())
    with tempfile.TemporaryDirectory(prefix="medgate-train-") as scratch:
        data_path = Path(scratch) / "data.npz"
        arrays = {}
        for split_name, split in dataset.splits.items():
            arrays[f"{split_name}_images"] = split.images
            arrays[f"{split_name}_labels"] = split.labels
        np.savez(data_path, **arrays)  # type: ignore[arg-type]
        request = {
            "model": spec.name,
            "module": model_module(spec.name),
            "sys_path": sys.path,
            "data": str(data_path),
            "dataset_source": str(dataset.source),
            "dataset_sha256": dataset.sha256,
            "key": checkpoint_key(spec, dataset, pin),
            "pin": pin.name,
            "out": str(path),
        }
        request_path = Path(scratch) / "request.json"
        request_path.write_text(json.dumps(request))
        _run_worker(request_path, pin, stream or sys.stderr)


def _run_worker(request_path: Path, pin: KernelPin, stream: IO[str]) -> None:
    environment = {**os.environ, **pin.environment()}
    command = [sys.executable, "-m", "medgate.train_worker", str(request_path)]
    with subprocess.Popen(
        command, env=environment, stderr=subprocess.PIPE, text=True, errors="replace"
    ) as worker:
        assert worker.stderr is not None
        printed = []
        for line in worker.stderr:
            printed.append(line)
            stream.write(line)
            stream.flush()
    if worker.returncode != 0:
        tail = "".join(printed[-20:]).strip()
        raise TrainingError(
            f"training worker ({' '.join(command)}) exited with {worker.returncode}:\n{tail}"
        )


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train(spec: ModelSpec, dataset: Dataset, stream: IO[str] | None = None) -> Checkpoint:
    """Train ``spec``'s architecture from a seeded init with ``spec.train``.

    Returns its weights, the entries of every size it serves (``_size_states``), and metadata
    with its split accuracies (at ``train_size``, and at each served size with that size's
    entries).
    """
    recipe = spec.train
    if recipe.target_sensitivity is not None and "val" not in dataset.splits:
        raise OperatingPointError(
            f"{dataset.source}: has no 'val' split, which model {spec.name!r}'s recipe needs to "
            "choose its operating point (target_sensitivity); add a val split to the data or "
            "drop target_sensitivity from the recipe"
        )
    train_split = dataset.split("train")
    sizes = recipe.train_sizes or (recipe.train_size,)
    # Once per size, not per batch: resizing is per image, so a batch of the whole split's
    # tensors is bit-identical to the batch resized on its own.
    inputs = {
        size: preprocess(train_split.images, size, spec.mean, spec.std, spec.in_chans)
        for size in sizes
    }
    labels = torch.from_numpy(train_split.labels)
    steps_per_epoch = math.ceil(len(labels) / recipe.batch_size)
    with _deterministic(recipe.seed):
        model = create_model(spec.name)
        optimizer = _optimizer(model, recipe)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch
        )
        progress = tqdm(
            total=recipe.epochs * steps_per_epoch,
            desc=f"medgate: train {spec.name}@{'/'.join(map(str, sizes))}",
            unit="step",
            file=stream or sys.stderr,
            mininterval=1.0 if (stream or sys.stderr).isatty() else 15.0,
        )
        model.train()
        with progress:
            for _ in range(recipe.epochs):
                order = torch.randperm(len(labels))
                for start in range(0, len(labels), recipe.batch_size):
                    index = order[start : start + recipe.batch_size]
                    size = sizes[int(torch.randint(len(sizes), ()))] if len(sizes) > 1 else sizes[0]
                    batch = _augment(inputs[size][index], recipe)
                    loss = F.cross_entropy(model(batch), labels[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                    progress.update()
        size_state, thresholds = _size_states(model, spec, dataset)
    model.eval()
    meta: dict[str, Any] = {"model": spec.name, "recipe": asdict(recipe)}
    if thresholds:
        meta["operating_threshold_by_size"] = thresholds
    for split in ("val", "test"):
        if split in dataset.splits:
            meta[f"{split}_accuracy"] = split_accuracy(model, spec, dataset, split)
            meta[f"{split}_accuracy_by_size"] = {
                size_key(name, size): split_accuracy(
                    _served(model, name, size_state.get(size_key(name, size))),
                    get_spec(name),
                    dataset,
                    split,
                    size,
                )
                for name, size in served_sizes(spec)
            }
    return Checkpoint(model.state_dict(), meta, size_state)


def _size_states(
    model: nn.Module, spec: ModelSpec, dataset: Dataset
) -> tuple[dict[str, SizeState], dict[str, float]]:
    """Each served (model, size)'s entries, and the operating threshold each was given.

    The state dict's own entries become those of ``train_size``, so a bare state dict is the
    model at the size its accuracy is reported at (multi-scale training leaves running averages
    of whichever sizes came last, and a bias with no operating point)."""
    states: dict[str, SizeState] = {}
    thresholds: dict[str, float] = {}
    for name, size in served_sizes(spec):
        key = size_key(name, size)
        states[key], threshold = _entries(model, name, size, dataset)
        if threshold is not None:
            thresholds[key] = threshold
    own = states.get(size_key(spec.name, spec.train.train_size))
    apply(model, own or _entries(model, spec.name, spec.train.train_size, dataset)[0], spec.name)
    return {key: state for key, state in states.items() if state}, thresholds


def _entries(
    model: nn.Module, name: str, size: int, dataset: Dataset
) -> tuple[SizeState, float | None]:
    """The entries of model ``name`` (``model``'s weights in its architecture) at ``size``:
    BatchNorm statistics estimated on the training split, then, where the recipe sets a target
    sensitivity, the classifier's bias with the operating point chosen with those statistics on
    the validation split."""
    spec = get_spec(name)
    recipe = spec.train
    state: SizeState = {}
    if has_norms(model):
        images = dataset.split("train").images
        state = calibrate(_served(model, name, None), spec, images, size, recipe.batch_size)
    if recipe.target_sensitivity is None:
        return state, None
    served = _served(model, name, state)
    bias, threshold = fold(served, spec, dataset.split("val"), size, recipe.target_sensitivity)
    return {**state, **bias}, threshold


def _served(model: nn.Module, name: str, stats: SizeState | None) -> nn.Module:
    """``model``'s weights in the architecture of ``name`` (itself, or a model loading them)."""
    served = create_model(name)
    served.load_state_dict(model.state_dict())
    if stats is not None:
        apply(served, stats, name)
    return served.eval()


def _optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=recipe.weight_decay,
        )
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def _augment(batch: torch.Tensor, recipe: TrainRecipe) -> torch.Tensor:
    if recipe.hflip and torch.rand(()) < 0.5:
        batch = batch.flip(-1)
    scale = float(torch.empty(()).uniform_(recipe.min_crop_scale, 1.0))
    size = batch.shape[-1]
    crop = max(8, round(size * math.sqrt(scale)))
    if crop < size:
        top, left = (int(torch.randint(0, size - crop + 1, ())) for _ in range(2))
        batch = batch[..., top : top + crop, left : left + crop]
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
    return batch


@torch.inference_mode()
def split_accuracy(
    model: nn.Module, spec: ModelSpec, dataset: Dataset, split: str, size: int | None = None
) -> float:
    data = dataset.split(split)
    size = size or spec.train.train_size
    correct = 0
    for start in range(0, len(data), 64):
        batch = preprocess(
            data.images[start : start + 64], size, spec.mean, spec.std, spec.in_chans
        )
        predicted = model(batch).argmax(dim=1)
        correct += int((predicted == torch.from_numpy(data.labels[start : start + 64])).sum())
    return correct / len(data)


def read_checkpoint(path: Path) -> Checkpoint:
    """Load ``{"state_dict": ..., "meta": ..., "size_state": ...}`` or a bare state dict, with
    ``weights_only``."""
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found; train it with `medgate train` or fix the path"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) "
            f"({_essence(error)}). Do not load it with weights_only=False: a file that names "
            "code to run can run anything on this machine; save a state_dict instead "
            "(torch.save(model.state_dict(), path)), not a pickled module"
        ) from error
    fix = "save model.state_dict() or {'state_dict': ..., 'meta': {...}}"
    state_dict, meta, size_state = payload, {}, {}
    if isinstance(payload, dict) and "state_dict" in payload:
        state_dict, meta = payload["state_dict"], payload.get("meta", {})
        size_state = payload.get("size_state", {})
        if not isinstance(meta, dict):
            raise CheckpointError(
                f"{path}: field meta holds {type(meta).__name__}, not a dict; {fix}"
            )
        if not isinstance(size_state, dict) or not all(
            isinstance(key, str) and _is_tensor_dict(stats) for key, stats in size_state.items()
        ):
            raise CheckpointError(
                f"{path}: field size_state is not a dict of '<model>@<size>' -> "
                "{buffer name: tensor}; drop the field (the state dict's statistics then serve "
                "every size) or save it in that form"
            )
    if not _is_tensor_dict(state_dict):
        raise CheckpointError(
            f"{path}: holds {type(state_dict).__name__}, not a state_dict (names -> tensors); {fix}"
        )
    return Checkpoint(state_dict, dict(meta), dict(size_state))


def _is_tensor_dict(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(name, str) and isinstance(tensor, torch.Tensor) for name, tensor in value.items()
    )


def _essence(error: Exception) -> str:
    """torch's unpickling errors run to a page, and open with advice to retry with
    ``weights_only=False``; the line naming the offending global is what the user needs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported global" in line]
    kept = [line for line in lines if "weights_only" not in line]
    return (named or kept or [type(error).__name__])[0]


def load_trained(spec: ModelSpec, path: Path, size: int | None = None) -> nn.Module:
    """The architecture of ``spec`` with the weights of ``path``, in eval mode, with the
    BatchNorm statistics the checkpoint holds for ``spec`` at ``size`` (its state dict's own
    when it holds none, as a bare state dict does)."""
    checkpoint = read_checkpoint(path)
    model = create_model(spec.name)
    try:
        model.load_state_dict(checkpoint.state_dict)
        key = size_key(spec.name, size) if size is not None else None
        if key is not None and key in checkpoint.size_state:
            apply(model, checkpoint.size_state[key], f"{path}: field size_state[{key!r}]")
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: does not fit model {spec.name!r}: {str(error).splitlines()[0]} ... "
            "point the model at a checkpoint of the same architecture"
        ) from error
    return model.eval()
