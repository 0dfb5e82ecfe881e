"""The tiny zoo's data: 16-px noise images, a bright square in the positive ones. Its own module,
so a test project can register models of its own on the same data."""

from __future__ import annotations

import numpy as np

from medgate import SyntheticRecipe


def squares(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    images = rng.integers(0, 80, size=(len(labels), 16, 16), dtype=np.uint8)
    bright = labels == 1
    images[bright, 4:12, 4:12] += rng.integers(40, 120, size=(int(bright.sum()), 1, 1)).astype(
        np.uint8
    )
    return images


RECIPE = SyntheticRecipe(
    name="tiny_squares",
    classes=("background", "square"),
    generate=squares,
    native_size=16,
    split_sizes=(("train", 96), ("val", 16), ("test", 400)),
)
