"""BatchNorm statistics per input size: estimated on the training split, carried by the
checkpoint, loaded with the size a case runs at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tiny_zoo
from medgate.core.registry import get_spec
from medgate.data import load_dataset, preprocess
from medgate.size_state import calibrate, served_sizes, size_key
from medgate.training import (
    CheckpointError,
    checkpoint_sha256,
    ensure_checkpoint,
    load_trained,
    read_checkpoint,
)


def _norm_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: buffer.clone()
        for name, buffer in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    }


def test_statistics_are_the_mean_and_variance_over_the_whole_split_at_that_size() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.BatchNorm2d(4), nn.Flatten())
    before = _norm_buffers(model)
    images = np.random.default_rng(0).integers(0, 256, size=(24, 20, 20), dtype=np.uint8)
    spec = tiny_zoo.SPEC
    for size in (12, 28):
        stats = calibrate(model, spec, images, size, batch=8)
        with torch.no_grad():
            batches = [
                conv(preprocess(images[i : i + 8], size, spec.mean, spec.std, spec.in_chans))
                for i in range(0, 24, 8)
            ]
        mean = torch.cat(batches).mean(dim=(0, 2, 3))
        variance = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
        torch.testing.assert_close(stats["1.running_mean"], mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats["1.running_var"], variance, rtol=1e-4, atol=1e-5)
    small, large = (calibrate(model, spec, images, size, 8)["1.running_var"] for size in (12, 28))
    assert not torch.allclose(small, large)
    after = _norm_buffers(model)
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    dataset = load_dataset(tiny_zoo.RECIPE.materialize(cache), num_classes=2)
    return ensure_checkpoint(tiny_zoo.SPEC, dataset, cache).path


def test_a_checkpoint_carries_each_sizes_statistics_and_a_case_loads_its_own(
    trained: Path,
) -> None:
    checkpoint = read_checkpoint(trained)
    spec = tiny_zoo.SPEC
    assert sorted(checkpoint.size_state) == sorted(size_key(spec.name, s) for s in spec.input_sizes)
    at_train_size = _norm_buffers(load_trained(spec, trained, spec.train.train_size))
    other = next(size for size in spec.input_sizes if size != spec.train.train_size)
    at_other = _norm_buffers(load_trained(spec, trained, other))
    bare = _norm_buffers(load_trained(spec, trained))
    # The state dict's own statistics are those of the size it is reported at.
    assert all(torch.equal(at_train_size[name], bare[name]) for name in bare)
    assert any(not torch.equal(at_other[name], bare[name]) for name in bare)
    stats = checkpoint.size_state[size_key(spec.name, other)]
    assert all(torch.equal(at_other[name], stats[name]) for name in stats)
    assert set(checkpoint.meta["test_accuracy_by_size"]) == set(checkpoint.size_state)


def test_the_checkpoints_identity_covers_its_statistics(trained: Path, tmp_path: Path) -> None:
    payload = read_checkpoint(trained).payload()
    key = next(iter(payload["size_state"]))
    name = next(iter(payload["size_state"][key]))
    payload["size_state"][key][name] = payload["size_state"][key][name] + 1e-6
    moved = tmp_path / "moved.pt"
    torch.save(payload, moved)
    assert checkpoint_sha256(moved) != checkpoint_sha256(trained)


def test_statistics_for_a_buffer_the_model_lacks_are_refused_naming_the_field(
    trained: Path, tmp_path: Path
) -> None:
    payload = read_checkpoint(trained).payload()
    spec = tiny_zoo.SPEC
    payload["size_state"][size_key(spec.name, 32)] = {"no.such.running_mean": torch.zeros(8)}
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"foreign\.pt: does not fit model 'tiny_cnn'.*"):
        load_trained(spec, path, 32)
    payload["size_state"] = ["not", "a", "mapping"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"foreign\.pt: field size_state is not a dict"):
        read_checkpoint(path)


def test_a_model_loading_anothers_weights_gets_statistics_of_its_own() -> None:
    """The seed's variant that upsamples 64 -> 224 inside forward() runs its backbone at 224 px:
    its statistics are estimated through its own forward, not borrowed from the 64 px model."""
    served = served_sizes(get_spec("pneumonia_resnet18"))
    assert ("pneumonia_resnet18_upsample224", 64) in served
    assert {("pneumonia_resnet18", size) for size in (64, 128, 224)} <= set(served)
