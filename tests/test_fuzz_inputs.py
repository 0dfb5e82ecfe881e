"""Every reader of a user's or a reviewer's file, fed corrupt files: each must return something
usable or raise its own error (which names the file and the field), never another exception
from inside the engine, and a NaN or infinity read anywhere must be refused.

Corruptions are drawn by hypothesis from a valid file of each kind: one field replaced by any
JSON value (NaN and infinities included), one field deleted, the text cut short, random bytes.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medgate.core.files import BaselineError
from medgate.core.fingerprint import Fingerprint
from medgate.data import DatasetError, load_image_folder, load_medmnist_npz
from medgate.gates.accuracy.metrics import METRICS
from medgate.gates.accuracy.store import (
    CaseRecord,
    CheckpointIdentity,
    DatasetIdentity,
    DatasetSection,
    ModelBaseline,
    read_baseline,
    to_json,
)
from medgate.gates.latency.budgets import FIELDS, load_budgets
from medgate.gates.latency.sampling import Rounds
from medgate.gates.latency.store import LatencyBaseline, read_latency_baseline
from medgate.gates.latency.store import to_json as latency_json
from medgate.gates.memory.store import Ceiling, MemoryBaseline, read_memory_baseline
from medgate.gates.memory.store import to_json as memory_json
from medgate.training import CheckpointError, read_checkpoint

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def _accuracy_file() -> str:
    record = CaseRecord(
        dict.fromkeys(METRICS, 0.75), "0110", CheckpointIdentity("c" * 64, "recipe")
    )
    section = DatasetSection(
        DatasetIdentity("tiny_squares", "bundled", "d" * 64),
        {"medgate": "0.1.0"},
        {"eager-fp32-16-cpu": record, "onnxruntime-fp32-16-cpu": record},
    )
    return to_json(ModelBaseline("tiny_cnn", "square", {"tiny_squares": section}))


def _memory_file() -> str:
    baseline = MemoryBaseline(
        "tiny_cnn",
        0.1,
        {"threads": 2},
        {"eager-fp32-16-bs16-cpu": {"inference": Ceiling(1000, 1100), "session": Ceiling(9, 10)}},
    )
    return memory_json(baseline)


def _latency_file() -> str:
    rounds = Rounds({"model": (0.001, 0.0011, 0.0012)}, (0.002, 0.0021, 0.0022))
    baseline = LatencyBaseline(
        "tiny_cnn", Fingerprint({"cpu_brand": "x", "threads": 2}), {"eager-fp32-16-bs1": rounds}
    )
    return latency_json(baseline)


READERS: dict[str, tuple[Callable[[], str], Callable[[Path], Any]]] = {
    "accuracy": (_accuracy_file, lambda path: read_baseline(path, num_classes=2)),
    "memory": (_memory_file, read_memory_baseline),
    "latency": (_latency_file, read_latency_baseline),
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a parsed JSON document, containers included."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _mutated(document: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def _finite_numbers(value: Any) -> Iterator[float]:
    """Every float a parsed result holds, through dataclasses, mappings and sequences."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, Mapping):
        for child in value.values():
            yield from _finite_numbers(child)
    elif isinstance(value, list | tuple):
        for child in value:
            yield from _finite_numbers(child)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _finite_numbers(getattr(value, name))


def _read_or_refuse(reader: Callable[[Path], Any], path: Path, error: type[Exception]) -> None:
    try:
        result = reader(path)
    except error as refused:
        message = str(refused)
    else:
        numbers = list(_finite_numbers(result))
        assert all(math.isfinite(n) for n in numbers), f"accepted a non-finite: {numbers}"
        return
    assert str(path) in message, f"the error does not name the file: {message}"


@pytest.mark.parametrize("lane", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_a_baseline_with_one_field_corrupted_is_read_or_refused_by_name(
    tmp_path: Path, lane: str, data: st.DataObject
) -> None:
    make, reader = READERS[lane]
    document = json.loads(make())
    path = data.draw(st.sampled_from(sorted(_paths(document), key=repr)))
    value = data.draw(JSON_VALUES)
    delete = data.draw(st.booleans())
    target = tmp_path / f"{lane}.json"
    target.write_text(json.dumps(_mutated(document, path, value, delete)))
    _read_or_refuse(reader, target, BaselineError)


@pytest.mark.parametrize("lane", sorted(READERS))
@FUZZ
@given(cut=st.floats(0, 1), junk=st.binary(max_size=64))
def test_a_truncated_or_garbled_baseline_is_refused_by_name(
    tmp_path: Path, lane: str, cut: float, junk: bytes
) -> None:
    make, reader = READERS[lane]
    text = make().encode()
    target = tmp_path / f"{lane}.json"
    target.write_bytes(text[: int(len(text) * cut)] + junk)
    _read_or_refuse(reader, target, BaselineError)


TOML_VALUES = st.sampled_from(
    ["nan", "inf", "-inf", "-1", "0", "1e400", '""', '"x"', "[]", "[1, -2]", "true", "{}", "3.5"]
) | st.integers(-(2**64), 2**64).map(str)
BUDGET_FIELDS = [*FIELDS, "unknown_field"]


@FUZZ
@given(field=st.sampled_from(BUDGET_FIELDS), value=TOML_VALUES)
def test_a_budget_with_any_value_in_any_field_is_loaded_or_refused_by_name(
    tmp_path: Path, field: str, value: str
) -> None:
    entry = {"name": '"fast"', "models": '"*"', "max_ms": "3.0", "input_sizes": "[64]"}
    entry[field] = value
    path = tmp_path / "budgets.toml"
    path.write_text("[[budget]]\n" + "".join(f"{key} = {raw}\n" for key, raw in entry.items()))
    _read_or_refuse(load_budgets, path, BaselineError)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


ARRAY_CORRUPTIONS = st.sampled_from(
    [
        "drop",
        "float",
        "nan-float",
        "negative",
        "too-large",
        "empty",
        "one-short",
        "5d",
        "object",
        "bool",
    ]
)


def _corrupt(array: np.ndarray, how: str) -> np.ndarray | None:
    if how == "drop":
        return None
    if how == "float":
        return array.astype(np.float32) + 0.5
    if how == "nan-float":
        return np.full(array.shape, np.nan, dtype=np.float32)
    if how == "negative":
        return -np.ones_like(array, dtype=np.int64)
    if how == "too-large":
        return np.full(array.shape, 300, dtype=np.int64)
    if how == "empty":
        return array[:0]
    if how == "one-short":
        return array[:-1]
    if how == "5d":
        return array.reshape(*array.shape, 1, 1)[None]
    if how == "object":
        return np.array(["a"] * len(array))
    return array.astype(bool)


@FUZZ
@given(key=st.sampled_from(["train", "val", "test"]), kind=st.booleans(), how=ARRAY_CORRUPTIONS)
def test_a_corrupted_medmnist_file_is_loaded_or_refused_by_name(
    tmp_path: Path, key: str, kind: bool, how: str
) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, (6, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (6, 1), dtype=np.int64)
    name = f"{key}_{'images' if kind else 'labels'}"
    corrupted = _corrupt(arrays[name], how)
    if corrupted is None:
        del arrays[name]
    else:
        arrays[name] = corrupted
    path = tmp_path / "data.npz"
    path.write_bytes(_npz(arrays))
    _read_or_refuse(lambda p: load_medmnist_npz(p, 2), path, DatasetError)


@FUZZ
@given(cut=st.floats(0, 1), junk=st.binary(max_size=32))
def test_a_truncated_dataset_or_checkpoint_is_refused_by_name(
    tmp_path: Path, cut: float, junk: bytes
) -> None:
    arrays = {
        f"{split}_{part}": np.zeros((2, 4, 4) if part == "images" else (2,), np.uint8)
        for split in ("train", "test")
        for part in ("images", "labels")
    }
    data = _npz(arrays)
    dataset = tmp_path / "data.npz"
    dataset.write_bytes(data[: int(len(data) * cut)] + junk)
    if cut < 1:
        _read_or_refuse(lambda p: load_medmnist_npz(p, 2), dataset, DatasetError)
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(3)}, "meta": {}}, buffer)
    checkpoint = tmp_path / "model.pt"
    payload = buffer.getvalue()
    checkpoint.write_bytes(payload[: int(len(payload) * cut)] + junk)
    if cut < 1:
        _read_or_refuse(read_checkpoint, checkpoint, CheckpointError)


CHECKPOINT_PAYLOADS = st.sampled_from(
    [
        [1, 2, 3],
        {"state_dict": "weights"},
        {"state_dict": {"w": torch.ones(2)}, "meta": "not a mapping"},
        {"state_dict": {"w": torch.ones(2)}, "size_state": "not a mapping"},
        {"state_dict": {"w": torch.ones(2)}, "size_state": {"m@8": {"w": 1.0}}},
        {"state_dict": {"w": torch.ones(2)}, "size_state": {"m@8": {"w": torch.ones(2)}}},
        {"w": torch.ones(2), "note": "text"},
        {"w": 1.5},
        torch.ones(4),
        None,
        {},
    ]
)


@FUZZ
@given(payload=CHECKPOINT_PAYLOADS)
def test_a_checkpoint_holding_anything_but_a_state_dict_is_refused_by_name(
    tmp_path: Path, payload: Any
) -> None:
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as refused:
        message = str(refused)
    else:
        assert isinstance(checkpoint.meta, dict)
        assert all(isinstance(tensor, torch.Tensor) for tensor in checkpoint.state_dict.values())
        assert all(
            isinstance(tensor, torch.Tensor)
            for stats in checkpoint.size_state.values()
            for tensor in stats.values()
        )
        return
    assert str(path) in message


def test_the_corruptions_reach_the_readers(tmp_path: Path) -> None:
    """The fuzzing above means something only if a corrupted file is refused at all."""
    for lane, (make, reader) in READERS.items():
        target = tmp_path / f"{lane}.json"
        target.write_text(make()[:-10])
        with pytest.raises(BaselineError):
            reader(target)
        target.write_text(make())
        assert reader(target) is not None


def _png(size: int, value: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(cut=st.floats(0, 1), junk=st.binary(max_size=32), victim=st.integers(0, 7))
def test_an_image_folder_with_a_damaged_image_is_loaded_or_refused_by_name(
    tmp_path_factory: pytest.TempPathFactory, cut: float, junk: bytes, victim: int
) -> None:
    root = tmp_path_factory.mktemp("folder")
    index = 0
    for split in ("train", "test"):
        for label in ("normal", "pneumonia"):
            (root / split / label).mkdir(parents=True)
            for copy in range(2):
                payload = _png(8, 30 * index)
                if index == victim:
                    payload = payload[: int(len(payload) * cut)] + junk
                (root / split / label / f"{copy}.png").write_bytes(payload)
                index += 1
    try:
        dataset = load_image_folder(root, 2, ("normal", "pneumonia"))
    except DatasetError as refused:
        message = str(refused)
    else:
        assert dataset.split("test").images.dtype == np.uint8
        return
    assert str(root) in message
