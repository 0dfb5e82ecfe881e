"""A screen's operating point: chosen on the validation split per size, folded into the
classifier's bias, carried by the checkpoint and loaded with the size a case runs at."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from torch import nn

import tiny_zoo
from medgate import register_model
from medgate.core.registry import get_spec
from medgate.data import Dataset, Split, load_dataset, preprocess
from medgate.operating_point import (
    OperatingPointError,
    classifier_bias,
    fold,
    positive_margins,
    threshold,
)
from medgate.size_state import apply, size_key
from medgate.training import Checkpoint, TrainRecipe, load_trained, train

SCREEN = dataclasses.replace(
    tiny_zoo.SPEC,
    name="tiny_screen",
    train=dataclasses.replace(tiny_zoo.SPEC.train, target_sensitivity=0.75),
)
register_model(SCREEN)(tiny_zoo.tiny_cnn)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 1.0])
def test_the_threshold_calls_the_target_share_of_positives_and_the_fewest_samples(
    target: float,
) -> None:
    rng = np.random.default_rng(1)
    positive = rng.random(300) < 0.4
    margins = rng.normal(size=300) + 1.5 * positive
    cut = threshold(margins, positive, target)
    called = margins > cut
    assert called[positive].mean() >= target
    assert not np.any(margins == cut)
    # Raising it past the next margin above would drop a positive it must call.
    above = np.sort(margins[margins > cut])[0]
    assert np.any(positive & (margins == above))
    assert (margins[positive] > above).mean() < target


def _head_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()


def _logits(model: nn.Module, split: Split, size: int) -> torch.Tensor:
    spec = tiny_zoo.SPEC
    with torch.no_grad():
        return model(preprocess(split.images, size, spec.mean, spec.std, spec.in_chans))


def test_folding_moves_every_margin_by_the_threshold_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(64, 1))
    images = rng.integers(0, 256, size=(64, 16, 16), dtype=np.uint8)
    images[labels[:, 0] == 1, 4:12, 4:12] //= 2
    split = Split(images, labels)
    model = _head_model()
    before = _logits(model, split, 16)
    entries, cut = fold(model, tiny_zoo.SPEC, split, 16, target=0.9)
    assert list(entries) == ["4.bias"]
    torch.testing.assert_close(_logits(model, split, 16), before)
    apply(model, entries, "folded")
    after = _logits(model, split, 16)
    index = tiny_zoo.SPEC.positive_index
    np.testing.assert_allclose(
        positive_margins(after, index), positive_margins(before, index) - cut, atol=1e-5
    )
    positive = labels[:, 0] == index
    assert (after.argmax(dim=1).numpy()[positive] == index).mean() >= 0.9
    scores = [torch.softmax(x, dim=1)[:, index].numpy() for x in (before, after)]
    assert skm.roc_auc_score(positive, scores[0]) == pytest.approx(
        skm.roc_auc_score(positive, scores[1])
    )


def test_a_model_without_a_biased_classifier_is_refused_saying_the_fix() -> None:
    with pytest.raises(OperatingPointError, match=r"no nn\.Linear with 3 outputs"):
        classifier_bias(_head_model(), 3)
    unbiased = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with pytest.raises(OperatingPointError, match=r"classifier '1' has no bias.*bias=True"):
        classifier_bias(unbiased, 2)
    with pytest.raises(ValueError, match=r"target_sensitivity 1\.5 .*\(0, 1\]"):
        TrainRecipe(train_size=16, target_sensitivity=1.5)


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Checkpoint, Dataset, Path]:
    cache = tmp_path_factory.mktemp("cache")
    dataset = load_dataset(SCREEN.dataset.materialize(cache), num_classes=2)
    checkpoint = train(SCREEN, dataset)
    path = cache / "screen.pt"
    torch.save(checkpoint.payload(), path)
    return checkpoint, dataset, path


def test_a_screen_checkpoint_carries_each_sizes_operating_point_and_meets_it_on_val(
    screen: tuple[Checkpoint, Dataset, Path],
) -> None:
    checkpoint, dataset, path = screen
    bias = classifier_bias(tiny_zoo.tiny_cnn(), 2)
    val = dataset.split("val")
    positive = val.labels == SCREEN.positive_index
    thresholds = checkpoint.meta["operating_threshold_by_size"]
    assert set(thresholds) == {size_key(SCREEN.name, size) for size in SCREEN.input_sizes}
    folded = []
    for size in SCREEN.input_sizes:
        state = checkpoint.size_state[size_key(SCREEN.name, size)]
        folded.append(state[bias])
        model = load_trained(get_spec(SCREEN.name), path, size)
        torch.testing.assert_close(model.state_dict()[bias], state[bias])
        called = _logits(model, val, size).argmax(dim=1).numpy() == SCREEN.positive_index
        assert called[positive].mean() >= SCREEN.train.target_sensitivity
    # Only the positive class's logit moves, by each size's own threshold.
    assert not torch.equal(folded[0], folded[1])
    torch.testing.assert_close(folded[0][0], folded[1][0])
    own = checkpoint.size_state[size_key(SCREEN.name, SCREEN.train.train_size)]
    torch.testing.assert_close(checkpoint.state_dict[bias], own[bias])


def test_a_recipe_with_an_operating_point_needs_a_val_split(tmp_path: Path) -> None:
    dataset = load_dataset(SCREEN.dataset.materialize(tmp_path), num_classes=2)
    no_val = Dataset(
        dataset.source, dataset.sha256, {k: v for k, v in dataset.splits.items() if k != "val"}
    )
    with pytest.raises(OperatingPointError, match=r"has no 'val' split.*drop target_sensitivity"):
        train(SCREEN, no_val)
