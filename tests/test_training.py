from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tiny_zoo
from medgate.data import load_dataset
from medgate.training import CheckpointError, ensure_checkpoint, load_trained, read_checkpoint


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tiny_zoo.RECIPE.materialize(tmp_path_factory.mktemp("data"))
    return load_dataset(path, num_classes=2)


def test_training_is_deterministic_and_cached(dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = ensure_checkpoint(tiny_zoo.SPEC, dataset, tmp_path / "a")
    second = ensure_checkpoint(tiny_zoo.SPEC, dataset, tmp_path / "b")
    assert first.trained_now
    assert second.trained_now
    weights_a, meta = read_checkpoint(first.path)
    weights_b, _ = read_checkpoint(second.path)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert meta["test_accuracy"] > 0.7  # it learned something
    again = ensure_checkpoint(tiny_zoo.SPEC, dataset, tmp_path / "a")
    assert not again.trained_now
    assert again.path == first.path


def test_a_users_bare_state_dict_loads(tmp_path: Path) -> None:
    model = tiny_zoo.tiny_cnn()
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    loaded = load_trained(tiny_zoo.SPEC, path)
    assert not loaded.training


def test_a_pickled_module_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(tiny_zoo.tiny_cnn(), path)
    with pytest.raises(CheckpointError, match=r"module\.pt: cannot be loaded .*save a state_dict"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: does not fit model 'tiny_cnn'"):
        load_trained(tiny_zoo.SPEC, path)


def test_a_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"absent\.pt: checkpoint not found"):
        read_checkpoint(tmp_path / "absent.pt")
