"""The accuracy gate's parts: metrics, paired statistics, checks, baseline files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medgate.core.files import BaselineError
from medgate.core.matrix import Case
from medgate.core.registry import get_spec
from medgate.core.verdict import Verdict
from medgate.gates.accuracy.checks import (
    BASELINE,
    REFERENCE,
    PairedDropCheck,
    RunIdentity,
    staleness,
)
from medgate.gates.accuracy.metrics import METRICS, Evaluation, Flips
from medgate.gates.accuracy.paired import McNemar, bootstrap_delta
from medgate.gates.accuracy.run import AccuracyLedger
from medgate.gates.accuracy.store import (
    CaseRecord,
    CheckpointIdentity,
    DatasetIdentity,
    DatasetSection,
    ModelBaseline,
    read_baseline,
    write_baseline,
)


def evaluation(labels: list[int], predictions: list[int], positive: int = 1) -> Evaluation:
    return Evaluation(np.array(labels), np.array(predictions), positive)


def test_metrics_score_the_positive_class_one_vs_rest() -> None:
    # Class 2 is positive: of its 3 samples 2 are found; of the 5 others 1 is called class 2.
    scored = evaluation([2, 2, 2, 0, 0, 1, 1, 1], [2, 2, 0, 0, 2, 1, 1, 0], positive=2)
    metrics = scored.metrics()
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(4 / 5)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert metrics["auroc"] is None  # no scores


def test_auroc_comes_from_the_positive_class_probability() -> None:
    logits = torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.5]])
    scored = Evaluation.from_logits(np.array([1, 1, 0, 0]), logits, positive_index=1)
    assert scored.metrics()["auroc"] == pytest.approx(1.0)
    assert scored.predictions.tolist() == [1, 1, 0, 1]


def test_logits_that_do_not_match_the_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="do not score 3 samples"):
        Evaluation.from_logits(np.array([0, 1, 1]), torch.zeros(2, 2), positive_index=1)


def test_flips_count_each_direction() -> None:
    reference = evaluation([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    candidate = evaluation([1, 1, 0, 0, 1], [0, 1, 0, 1, 1])
    flips = Flips.between(reference, candidate)
    assert (flips.broken, flips.fixed, flips.agreement) == (1, 1, pytest.approx(0.6))


@pytest.mark.parametrize(("broken", "significant"), [(6, True), (3, False)])
def test_mcnemar_is_exact_on_discordant_positives(broken: int, significant: bool) -> None:
    labels = [1] * 20 + [0] * 20
    reference = evaluation(labels, labels)
    candidate = evaluation(labels, [0] * broken + [1] * (20 - broken) + [0] * 20)
    test = McNemar.on(reference, candidate, "sensitivity")
    assert (test.broken, test.fixed) == (broken, 0)
    assert test.p_value == pytest.approx(0.5**broken)
    assert (test.p_value < 0.05) is significant
    # Specificity looks only at negatives, which did not change.
    assert McNemar.on(reference, candidate, "specificity").p_value == 1.0


def test_the_paired_bootstrap_brackets_the_observed_drop() -> None:
    labels = [1] * 100 + [0] * 100
    reference = evaluation(labels, labels)
    candidate = evaluation(labels, [0] * 10 + [1] * 90 + [0] * 100)
    interval = bootstrap_delta(reference, candidate, "sensitivity")
    assert interval is not None
    assert interval.low < -0.10 < interval.high < 0


def _drop(labels: list[int], predictions: list[int]) -> str:
    reference = evaluation(labels, labels)
    check = PairedDropCheck("sensitivity", tolerance=0.01, significance=0.05)
    return check.check(REFERENCE, reference, evaluation(labels, predictions)).verdict


def test_a_drop_fails_only_beyond_tolerance_and_significant() -> None:
    labels = [1] * 200 + [0] * 200
    assert _drop(labels, labels) == Verdict.SAME
    assert _drop(labels, [0] * 2 + [1] * 198 + [0] * 200) == Verdict.SAME  # 1 pp: within tolerance
    assert _drop(labels, [0] * 4 + [1] * 196 + [0] * 200) == Verdict.TOO_NOISY  # 2 pp, p=1/16
    assert _drop(labels, [0] * 8 + [1] * 192 + [0] * 200) == "REGRESSED"  # 4 pp, p=1/256


def test_auroc_against_a_baseline_without_scores_uses_the_tolerance_alone() -> None:
    labels = np.array([1, 1, 0, 0])
    stored = Evaluation(labels, np.array([1, 1, 0, 0]), 1)
    now = Evaluation.from_logits(labels, torch.tensor([[0, 1.0], [0, -1.0], [0, 0.0], [0, -2]]), 1)
    finding = PairedDropCheck("auroc", 0.01, 0.05).check(BASELINE, stored, now, stored=1.0)
    assert finding.verdict == "REGRESSED"
    assert finding.baseline == 1.0
    assert finding.delta == pytest.approx(now.metrics()["auroc"] - 1.0)


def _section(
    dataset: str = "d" * 64, checkpoint: str = "c" * 64, recipe: str | None = "r"
) -> DatasetSection:
    return DatasetSection(
        dataset=DatasetIdentity("tiny_squares", "bundled recipe tiny_squares v1", dataset),
        versions={"medgate": "0.1.0"},
        cases={
            "eager-fp32-16-cpu": CaseRecord(
                dict.fromkeys(METRICS, 0.5), "0101", CheckpointIdentity(checkpoint, recipe)
            )
        },
    )


@pytest.mark.parametrize(
    ("run", "stale"),
    [
        (RunIdentity("d" * 64, CheckpointIdentity("c" * 64, "r")), None),
        # Same recipe retrained elsewhere: compared by metrics, not refused.
        (RunIdentity("d" * 64, CheckpointIdentity("e" * 64, "r")), None),
        (
            RunIdentity("d" * 64, CheckpointIdentity("e" * 64, "other")),
            "checkpoint tensors SHA-256",
        ),
        (RunIdentity("d" * 64, CheckpointIdentity("e" * 64, None)), "tensors SHA-256"),
        (RunIdentity("f" * 64, CheckpointIdentity("c" * 64, "r")), "dataset SHA-256"),
    ],
)
def test_a_baseline_is_stale_when_its_data_or_model_differ(
    run: RunIdentity, stale: str | None
) -> None:
    section = _section()
    reason = staleness(section, section.cases["eager-fp32-16-cpu"], run)
    assert reason is None if stale is None else stale in (reason or "")


def test_baselines_round_trip_sorted_and_leave_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "accuracy" / "tiny_cnn.json"
    baseline = ModelBaseline("tiny_cnn", "square", {"tiny_squares": _section()})
    write_baseline(path, baseline)
    assert [p.name for p in path.parent.iterdir()] == ["tiny_cnn.json"]
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    again = read_baseline(path)
    assert again is not None
    assert again.sections["tiny_squares"].cases[
        "eager-fp32-16-cpu"
    ].prediction_array().tolist() == [
        0,
        1,
        0,
        1,
    ]


def test_a_missing_field_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    payload = {"schema": 2, "model": "m", "positive_class": "p", "datasets": {"x": {"dataset": {}}}}
    path.write_text(json.dumps(payload))
    with pytest.raises(BaselineError, match=r"m\.json: field datasets\.x\.checkpoint: expected an"):
        read_baseline(path)
    case = {"metrics": dict.fromkeys(METRICS, 0.5), "predictions": "01"}
    dataset = {"name": "x", "source": "s", "sha256": "d"}
    section = {"dataset": dataset, "versions": {}, "cases": {"eager-fp32-16-cpu": case}}
    payload = {"schema": 3, "model": "m", "positive_class": "p", "datasets": {"x": section}}
    path.write_text(json.dumps(payload))
    with pytest.raises(
        BaselineError, match=r"field datasets\.x\.cases\.eager-fp32-16-cpu\.checkpoint: expected"
    ):
        read_baseline(path)


def test_a_schema_2_file_reads_its_section_checkpoint_as_every_case_s(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    case = {"metrics": dict.fromkeys(METRICS, 0.5), "predictions": "01"}
    section = {
        "dataset": {"name": "x", "source": "s", "sha256": "d"},
        "checkpoint": {"tensors_sha256": "c" * 64, "recipe_key": "r"},
        "versions": {},
        "cases": {"eager-fp32-16-cpu": case, "onnxruntime-fp32-16-cpu": case},
    }
    payload = {"schema": 2, "model": "m", "positive_class": "p", "datasets": {"x": section}}
    path.write_text(json.dumps(payload))
    stored = read_baseline(path)
    assert stored is not None
    checkpoints = {record.checkpoint for record in stored.sections["x"].cases.values()}
    assert checkpoints == {CheckpointIdentity("c" * 64, "r")}


def test_recording_merges_cases_whatever_their_checkpoint(tmp_path: Path) -> None:
    """A narrow --update-baselines rewrites the cases it measured and keeps every other one, each
    with the checkpoint it was measured with; only a changed dataset replaces a section."""
    import tiny_zoo  # noqa: F401

    spec = get_spec("tiny_cnn")
    labels = np.array([0, 1, 1, 0])
    seen = Evaluation(labels, labels, 1)

    def record(backend: str, checkpoint: str, data: str = "d") -> tuple[ModelBaseline, list[str]]:
        ledger = AccuracyLedger(tmp_path, tmp_path, update=True)
        dataset = DatasetIdentity("tiny_squares", "bundled", data * 64)
        run = RunIdentity(data * 64, CheckpointIdentity(checkpoint, None))
        ledger.judge(
            Case("tiny_cnn", backend, "fp32", 16, 64, "cpu"), spec, dataset, run, None, seen
        )
        (path,) = ledger.write()
        stored = read_baseline(path)
        assert stored is not None
        return stored, ledger.notes

    record("eager", "c" * 64)
    record("onnxruntime", "c" * 64)
    merged, notes = record("torchscript", "e" * 64)
    cases = merged.sections["tiny_squares"].cases
    assert sorted(cases) == [
        "eager-fp32-16-cpu",
        "onnxruntime-fp32-16-cpu",
        "torchscript-fp32-16-cpu",
    ]
    assert cases["eager-fp32-16-cpu"].checkpoint.tensors_sha256 == "c" * 64
    assert cases["torchscript-fp32-16-cpu"].checkpoint.tensors_sha256 == "e" * 64
    assert notes == []
    replaced, notes = record("eager", "e" * 64, data="f")
    assert sorted(replaced.sections["tiny_squares"].cases) == ["eager-fp32-16-cpu"]
    (note,) = notes
    assert "section tiny_squares replaced whole, its dataset changed" in note
    assert "2 case(s) not re-recorded were dropped" in note
    assert "onnxruntime-fp32-16-cpu" in note
