from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tiny_zoo
from medgate.data import DatasetError, load_dataset, preprocess


def write_npz(path: Path, **overrides: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 255, (10, 8, 8), dtype=np.uint8),
        "train_labels": (np.arange(10) % 2)[:, None],
        "test_images": rng.integers(0, 255, (4, 8, 8), dtype=np.uint8),
        "test_labels": (np.arange(4) % 2)[:, None],
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def write_png(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


def test_medmnist_npz_loads_splits(tmp_path: Path) -> None:
    dataset = load_dataset(write_npz(tmp_path / "d.npz"), num_classes=2)
    assert set(dataset.splits) == {"train", "test"}
    assert dataset.split("train").images.shape == (10, 8, 8)
    assert dataset.split("test").labels.tolist() == [0, 1, 0, 1]
    assert len(dataset.sha256) == 64


def test_the_real_pneumoniamnist_layout_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist_balanced.npz"
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    dataset = load_dataset(path, num_classes=2)
    assert len(dataset.split("test")) == 468
    assert dataset.split("train").images.shape[1:] == (28, 28)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.npz: no such file"):
        load_dataset(tmp_path / "nope.npz", num_classes=2)


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(
        path, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.int64)
    )
    with pytest.raises(DatasetError, match=r"d\.npz: missing key 'test_images'"):
        load_dataset(path, num_classes=2)


def test_labels_out_of_range_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", test_labels=np.array([[0], [1], [2], [5]]))
    with pytest.raises(DatasetError, match=r"test_labels holds labels 0\.\.5, the model has 2"):
        load_dataset(path, num_classes=2)


def test_float_pixels_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", train_images=np.zeros((10, 8, 8), np.float32))
    with pytest.raises(DatasetError, match="train_images has dtype float32; store uint8"):
        load_dataset(path, num_classes=2)


def test_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", train_labels=np.zeros((3, 1), np.int64))
    with pytest.raises(DatasetError, match="holds 10 images but train_labels 3 labels"):
        load_dataset(path, num_classes=2)


def test_image_folder_maps_folders_to_class_names(tmp_path: Path) -> None:
    for split in ("train", "test"):
        # Folder order (NORMAL < PNEUMONIA) agrees; the mapping is by name, case-insensitively.
        write_png(tmp_path / split / "PNEUMONIA" / "a.png", 200)
        write_png(tmp_path / split / "NORMAL" / "b.png", 20)
    dataset = load_dataset(tmp_path, num_classes=2, class_names=("normal", "pneumonia"))
    train = dataset.split("train")
    bright = train.images.reshape(len(train), -1).mean(axis=1) > 100
    assert train.labels[bright].tolist() == [1]


def test_image_folder_without_split_folders_is_split_by_name(tmp_path: Path) -> None:
    for index in range(40):
        write_png(tmp_path / ("a" if index % 2 else "b") / f"{index}.png", index)
    dataset = load_dataset(tmp_path, num_classes=2)
    assert sum(len(s) for s in dataset.splits.values()) == 40
    assert len(dataset.split("test")) > 0


def test_empty_class_folder_names_the_folder(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "normal" / "a.png", 10)
    (tmp_path / "train" / "pneumonia").mkdir(parents=True)
    write_png(tmp_path / "test" / "normal" / "a.png", 10)
    write_png(tmp_path / "test" / "pneumonia" / "a.png", 10)
    with pytest.raises(DatasetError, match=r"train/pneumonia: class folder holds no images"):
        load_dataset(tmp_path, num_classes=2, class_names=("normal", "pneumonia"))


def test_unknown_class_folder_is_refused(tmp_path: Path) -> None:
    for name in ("normal", "covid"):
        write_png(tmp_path / name / "a.png", 10)
    with pytest.raises(DatasetError, match=r"covid: folder name is not one of the model's classes"):
        load_dataset(tmp_path, num_classes=2, class_names=("normal", "pneumonia"))


def test_preprocess_resizes_normalizes_and_replicates_channels() -> None:
    images = np.full((2, 8, 8), 255, dtype=np.uint8)
    out = preprocess(images, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), in_chans=3)
    assert out.shape == (2, 3, 16, 16)
    assert float(out.max()) == pytest.approx(2.0)
    gray = preprocess(np.zeros((1, 8, 8, 3), np.uint8), 4, (0.0,), (1.0,), in_chans=1)
    assert gray.shape == (1, 1, 4, 4)


def test_synthetic_recipe_is_deterministic_and_splits_are_disjoint(tmp_path: Path) -> None:
    first = tiny_zoo.RECIPE.materialize(tmp_path / "a")
    second = tiny_zoo.RECIPE.materialize(tmp_path / "b")
    a = load_dataset(first, num_classes=2)
    b = load_dataset(second, num_classes=2)
    for split in a.splits:
        assert np.array_equal(a.split(split).images, b.split(split).images)
    train = {image.tobytes() for image in a.split("train").images}
    assert not any(image.tobytes() in train for image in a.split("test").images)
    assert np.bincount(a.split("test").labels).tolist() == [200, 200]


def test_bundled_recipes_are_hard_enough_to_matter(tmp_path: Path) -> None:
    """Class-mean pixel differences exist but are small against per-image spread."""
    from fixtures import chest_xray

    labels = np.repeat([0, 1], 40)
    images = chest_xray.RECIPE.generate(np.random.default_rng(0), labels).astype(float)
    per_image = images.reshape(len(labels), -1).mean(axis=1)
    gap = abs(per_image[labels == 1].mean() - per_image[labels == 0].mean())
    assert gap < per_image.std()


def test_float_labels_are_refused_not_truncated(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", test_labels=np.array([[0.0], [1.0], [0.7], [1.0]]))
    with pytest.raises(DatasetError, match=r"d\.npz: test_labels holds float64 values"):
        load_dataset(path, num_classes=2)


def test_a_decompression_bomb_in_an_image_folder_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for split in ("train", "test"):
        write_png(tmp_path / split / "normal" / "a.png", 20)
        write_png(tmp_path / split / "pneumonia" / "huge.png", 200, size=64)
    # Pillow refuses images above twice this many pixels; 64x64 stands in for a 20000x20000.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DatasetError, match=r"huge\.png: not a readable image.*decompression bomb"):
        load_dataset(tmp_path, num_classes=2, class_names=("normal", "pneumonia"))
