"""Stored evaluations of a side (``medgate.base.run.read_evaluation``): only a whole one is read
back; anything else is evaluated again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgate.base.run import read_evaluation
from medgate.gates.accuracy.metrics import Evaluation

WHOLE = {
    "labels": [0, 1, 1],
    "predictions": [0, 1, 0],
    "positive_index": 1,
    "positive_scores": [0.1, 0.9, 0.4],
    "dataset": "ab12",
}


def _write(tmp_path: Path, record: object) -> Path:
    path = tmp_path / "side-key.json"
    path.write_text(json.dumps(record))
    return path


def test_a_whole_evaluation_is_read_back(tmp_path: Path) -> None:
    assert read_evaluation(_write(tmp_path, WHOLE)) == WHOLE
    assert read_evaluation(_write(tmp_path, {**WHOLE, "positive_scores": None})) is not None


@pytest.mark.parametrize(
    "record",
    [
        {key: value for key, value in WHOLE.items() if key != "predictions"},
        {**WHOLE, "predictions": [0, 1]},
        {**WHOLE, "positive_scores": [0.1]},
        {**WHOLE, "positive_index": "1"},
        {**WHOLE, "labels": "011"},
        [WHOLE],
    ],
    ids=["missing-field", "short-predictions", "short-scores", "index-text", "labels-text", "list"],
)
def test_a_partial_or_foreign_evaluation_is_not_trusted(tmp_path: Path, record: object) -> None:
    assert read_evaluation(_write(tmp_path, record)) is None


def test_a_missing_or_cut_file_is_not_trusted(tmp_path: Path) -> None:
    assert read_evaluation(tmp_path / "absent.json") is None
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(WHOLE)[:40])
    assert read_evaluation(cut) is None


def test_an_evaluation_written_as_a_record_reads_back_whole(tmp_path: Path) -> None:
    evaluation = Evaluation.from_record(WHOLE)
    record = read_evaluation(_write(tmp_path, evaluation.to_record("ab12")))
    assert record == WHOLE
    assert Evaluation.from_record(record).predictions.tolist() == WHOLE["predictions"]
