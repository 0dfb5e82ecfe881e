"""Datasets the gate evaluates on, and the preprocessing stage.

Every source ends up in one shape: ``Dataset`` with ``train`` / ``val`` / ``test`` splits of
uint8 images (N, H, W) or (N, H, W, 3) and int64 labels. The bundled synthetic recipes write
MedMNIST-layout ``.npz`` files, so bundled and user data go through the same loader.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgate.core.files import atomic_write_bytes, sha256_file

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class DatasetError(ValueError):
    """Bad dataset input; the message names the file, what is wrong and the fix."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    source: Path
    sha256: str
    splits: Mapping[str, Split]

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DatasetError(
                f"{self.source}: has no {name!r} split (it has {', '.join(self.splits)})"
            )
        return self.splits[name]


Generator = Callable[[np.random.Generator, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SyntheticRecipe:
    """A deterministic generator of one task's data.

    ``generate(rng, labels)`` returns uint8 images (N, S, S) for the given labels. Each split is
    drawn from its own seed, so the test split never shares an image with the training split.
    Bump ``version`` whenever the generator's output changes: it is part of the cache key.
    """

    name: str
    classes: tuple[str, ...]
    generate: Generator
    native_size: int
    version: int = 1
    seed: int = 0
    split_sizes: tuple[tuple[str, int], ...] = (("train", 1000), ("val", 200), ("test", 400))

    @property
    def key(self) -> str:
        text = json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "seed": self.seed,
                "splits": self.split_sizes,
                "size": self.native_size,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def materialize(self, cache_dir: Path) -> Path:
        """Write the recipe's MedMNIST-layout ``.npz`` once; later calls return the cached file."""
        path = cache_dir / "datasets" / f"{self.name}-{self.key}.npz"
        if path.exists():
            return path
        arrays: dict[str, np.ndarray] = {}
        for index, (split, count) in enumerate(self.split_sizes):
            rng = np.random.default_rng([self.seed, index, zlib.crc32(self.name.encode())])
            labels = rng.permutation(np.arange(count) % len(self.classes)).astype(np.int64)
            images = self.generate(rng, labels)
            expected = (count, self.native_size, self.native_size)
            if images.shape != expected or images.dtype != np.uint8:
                raise RuntimeError(
                    f"recipe {self.name!r} generated {images.dtype}{images.shape}, "
                    f"expected uint8{expected}"
                )
            arrays[f"{split}_images"] = images
            arrays[f"{split}_labels"] = labels[:, None]
        buffer = io.BytesIO()
        # numpy's stub types **kwds as its bool options; the names here are array keys.
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(path, buffer.getvalue())
        return path


def load_dataset(path: Path, num_classes: int, class_names: tuple[str, ...] = ()) -> Dataset:
    """Load a MedMNIST ``.npz`` file or an ImageFolder directory."""
    if not path.exists():
        raise DatasetError(
            f"{path}: no such file or directory; point the model at a MedMNIST .npz file or an "
            "ImageFolder directory (one sub-folder per class)"
        )
    if path.is_dir():
        return load_image_folder(path, num_classes, class_names)
    return load_medmnist_npz(path, num_classes)


def load_medmnist_npz(path: Path, num_classes: int) -> Dataset:
    """Read ``{split}_images`` / ``{split}_labels`` for train, val (optional) and test."""
    try:
        archive = np.load(path, allow_pickle=False)
    except _UNREADABLE as error:
        raise DatasetError(
            f"{path}: not a readable .npz file ({type(error).__name__}: {error}); write it with "
            "numpy.savez(path, train_images=..., train_labels=..., ...)"
        ) from error
    with archive:
        keys = set(archive.files)
        splits: dict[str, Split] = {}
        for split in SPLITS:
            image_key, label_key = f"{split}_images", f"{split}_labels"
            if image_key not in keys and label_key not in keys and split == "val":
                continue
            for key in (image_key, label_key):
                if key not in keys:
                    raise DatasetError(
                        f"{path}: missing key {key!r} (found {sorted(keys)}); a MedMNIST file "
                        f"holds {', '.join(f'{s}_images/{s}_labels' for s in SPLITS)}"
                    )
            images = _member(archive, path, image_key)
            raw_labels = np.asarray(_member(archive, path, label_key)).reshape(-1)
            if raw_labels.dtype.kind not in "iu":
                raise DatasetError(
                    f"{path}: {label_key} holds {raw_labels.dtype} values; class labels must be "
                    "whole numbers (0 .. classes-1), e.g. labels.astype(np.int64) after checking "
                    "they are"
                )
            labels = raw_labels.astype(np.int64)
            splits[split] = _checked_split(path, split, images, labels, num_classes)
    return Dataset(source=path, sha256=sha256_file(path), splits=splits)


#: What numpy raises for a file that is not an intact .npz: not a zip, cut short, a member whose
#: compressed bytes or header are damaged, or one that needs pickle.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _member(archive: Any, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except _UNREADABLE as error:
        raise DatasetError(
            f"{path}: {key} cannot be read ({type(error).__name__}: {error}); the file is "
            "damaged or holds objects, not arrays: write it again with numpy.savez"
        ) from error


def _checked_split(
    path: Path, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int
) -> Split:
    if images.dtype != np.uint8:
        raise DatasetError(
            f"{path}: {split}_images has dtype {images.dtype}; store uint8 pixels (0-255)"
        )
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DatasetError(
            f"{path}: {split}_images has shape {images.shape}; expected (N, H, W) or (N, H, W, 3)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{path}: {split}_images holds {images.shape[0]} images but {split}_labels "
            f"{labels.shape[0]} labels; they must match one to one"
        )
    if labels.size == 0:
        raise DatasetError(f"{path}: {split}_labels is empty; every split needs samples")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DatasetError(
            f"{path}: {split}_labels holds labels {labels.min()}..{labels.max()}, the model has "
            f"{num_classes} classes (0..{num_classes - 1}); relabel or choose the matching model"
        )
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return Split(images=np.ascontiguousarray(images), labels=labels)


def load_image_folder(
    root: Path, num_classes: int, class_names: tuple[str, ...] = (), storage_size: int = 256
) -> Dataset:
    """Read ``root/{train,val,test}/<class>/*.png`` or ``root/<class>/*.png``.

    Images are read as grayscale. Class folders are matched to the model's class names
    case-insensitively when given, so a folder order that differs from the model's cannot swap
    labels silently. Without split folders, files are split 80/10/10 by a hash of their names.
    Images of differing sizes are resized to ``storage_size`` squares.
    """
    from PIL import Image

    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if split_dirs and ("train" not in split_dirs or "test" not in split_dirs):
        raise DatasetError(
            f"{root}: has split folders {sorted(split_dirs)} but needs both 'train' and 'test'"
        )
    files: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    for split, directory in split_dirs.items() or [("all", root)]:
        for label, class_dir in _class_folders(directory, num_classes, class_names):
            images = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DatasetError(
                    f"{class_dir}: class folder holds no images "
                    f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder"
                )
            for image_file in images:
                target = split if split != "all" else _hash_split(image_file.name)
                files[target].append((image_file, label))
    digest = hashlib.sha256()
    splits: dict[str, Split] = {}
    for split, entries in files.items():
        if not entries:
            continue
        pixels = []
        for image_path, _ in entries:
            try:
                with Image.open(image_path) as image:
                    pixels.append(np.asarray(image.convert("L")))
            except (OSError, Image.DecompressionBombError) as error:
                raise DatasetError(
                    f"{image_path}: not a readable image ({error}); medical images for this "
                    "gate are small: resize it, or remove it from the folder"
                ) from error
            digest.update(image_path.relative_to(root).as_posix().encode())
            digest.update(pixels[-1].tobytes())
        if len({p.shape for p in pixels}) > 1:
            pixels = [
                np.asarray(
                    Image.fromarray(p).resize(
                        (storage_size, storage_size), Image.Resampling.BILINEAR
                    )
                )
                for p in pixels
            ]
        labels = np.array([label for _, label in entries], dtype=np.int64)
        splits[split] = _checked_split(root, split, np.stack(pixels), labels, num_classes)
    if "test" not in splits or "train" not in splits:
        raise DatasetError(f"{root}: too few images to form both a train and a test split")
    return Dataset(source=root, sha256=digest.hexdigest(), splits=splits)


def _class_folders(
    directory: Path, num_classes: int, class_names: tuple[str, ...]
) -> list[tuple[int, Path]]:
    folders = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) != num_classes:
        raise DatasetError(
            f"{directory}: found {len(folders)} class folders "
            f"({', '.join(p.name for p in folders)}), the model has {num_classes} classes"
            + (f" ({', '.join(class_names)})" if class_names else "")
        )
    if not class_names:
        return list(enumerate(folders))
    by_name = {name.lower(): index for index, name in enumerate(class_names)}
    mapped = []
    for folder in folders:
        if folder.name.lower() not in by_name:
            raise DatasetError(
                f"{folder}: folder name is not one of the model's classes "
                f"({', '.join(class_names)}); rename the folder to the class it holds"
            )
        mapped.append((by_name[folder.name.lower()], folder))
    return mapped


def _hash_split(name: str) -> str:
    bucket = zlib.crc32(name.encode()) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def preprocess(
    images: np.ndarray,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_chans: int,
) -> torch.Tensor:
    """uint8 (N, H, W[, 3]) -> normalized float32 (N, in_chans, size, size).

    This is the preprocessing stage the seeds timed separately; model latency excludes it.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    if pixels.shape[1] == 3 and in_chans == 1:
        pixels = pixels.mean(dim=1, keepdim=True)
    if pixels.shape[-1] != size or pixels.shape[-2] != size:
        pixels = F.interpolate(
            pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    if pixels.shape[1] == 1 and in_chans == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((pixels - mean_t) / std_t).contiguous()
