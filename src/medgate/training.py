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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from medgate.core.kernels import KernelPin, pin_for
from medgate.core.machine import cpu
from medgate.core.registry import ModelSpec, create_model, model_module
from medgate.data import Dataset, preprocess

RECIPE_FORMAT = 3


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the fix."""


class TrainingError(RuntimeError):
    """The training worker failed; the message carries the end of what it printed."""


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of the CPU training recipe. ``train_size`` is the input size trained at."""

    train_size: int
    epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    min_crop_scale: float = 0.8
    optimizer: Literal["adamw", "sgd"] = "adamw"
    hflip: bool = True
    seed: int = 0


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
    return weights_sha256(read_checkpoint(path)[0])


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


def train(
    spec: ModelSpec, dataset: Dataset, stream: IO[str] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``spec``'s architecture from a seeded init with ``spec.train``.

    Returns the model in eval mode and metadata including its split accuracies.
    """
    recipe = spec.train
    train_split = dataset.split("train")
    inputs = preprocess(train_split.images, recipe.train_size, spec.mean, spec.std, spec.in_chans)
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
            desc=f"medgate: train {spec.name}@{recipe.train_size}",
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
                    batch = _augment(inputs[index], recipe)
                    loss = F.cross_entropy(model(batch), labels[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                    progress.update()
    model.eval()
    meta: dict[str, Any] = {"model": spec.name, "recipe": asdict(recipe)}
    for split in ("val", "test"):
        if split in dataset.splits:
            meta[f"{split}_accuracy"] = split_accuracy(model, spec, dataset, split)
    return model, meta


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


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``{"state_dict": ..., "meta": ...}`` or a bare state dict, with ``weights_only``."""
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
    state_dict, meta = payload, {}
    if isinstance(payload, dict) and "state_dict" in payload:
        state_dict, meta = payload["state_dict"], payload.get("meta", {})
        if not isinstance(meta, dict):
            raise CheckpointError(
                f"{path}: field meta holds {type(meta).__name__}, not a dict; {fix}"
            )
    if not isinstance(state_dict, dict) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor)
        for name, value in state_dict.items()
    ):
        raise CheckpointError(
            f"{path}: holds {type(state_dict).__name__}, not a state_dict (names -> tensors); {fix}"
        )
    return state_dict, dict(meta)


def _essence(error: Exception) -> str:
    """torch's unpickling errors run to a page, and open with advice to retry with
    ``weights_only=False``; the line naming the offending global is what the user needs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported global" in line]
    kept = [line for line in lines if "weights_only" not in line]
    return (named or kept or [type(error).__name__])[0]


def load_trained(spec: ModelSpec, path: Path) -> nn.Module:
    """The architecture of ``spec`` with the weights of ``path``, in eval mode."""
    state_dict, _ = read_checkpoint(path)
    model = create_model(spec.name)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: does not fit model {spec.name!r}: {str(error).splitlines()[0]} ... "
            "point the model at a checkpoint of the same architecture"
        ) from error
    return model.eval()
