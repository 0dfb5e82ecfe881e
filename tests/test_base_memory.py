"""Memory peaks against the base (``BaseRun.compare_memory``): traced in a side's worker once, kept
under that side's identity, and read back by a later run whose base or head has that identity;
never read back where the two sides are identical, and traced again when memray changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_base_run import new_base_run

from medgate.base import run as base_run
from medgate.base.run import BaseRun, read_memory_peak
from medgate.core.matrix import Case
from medgate.core.verdict import Verdict

CASE = Case("tiny_cnn", "eager", "fp32", 16, 4, "cpu")


def _identity(engine: str) -> dict[str, Any]:
    return {"engine": engine, "model_code": "m", "weights": "w", "dataset": "d", "versions": {}}


class FakeWorkers:
    """Answers a BaseRun's requests as two workers would, and counts what was asked of them."""

    def __init__(self, engines: dict[str, str], peaks: dict[str, int]) -> None:
        self.engines, self.peaks = engines, peaks
        self.asked: list[tuple[str, str]] = []

    def worker(self, side: str) -> FakeWorker:
        return FakeWorker(self, side)

    def answer(self, side: str, request: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((side, request["op"]))
        if request["op"] == "identity":
            return _identity(self.engines[side])
        if request["op"] == "memory":
            return {"peak_bytes": self.peaks[side]}
        return {}

    def traced(self) -> list[str]:
        return [side for side, op in self.asked if op == "memory"]

    def prepared(self) -> list[str]:
        return [side for side, op in self.asked if op == "prepare"]


class FakeWorker:
    """One side, with the client's interface (``medgate.base.client.Worker``)."""

    def __init__(self, workers: FakeWorkers, side: str) -> None:
        self.workers, self.side = workers, side

    def send(self, request: dict[str, Any]) -> None:
        return None

    def receive(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.workers.answer(self.side, request)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.workers.answer(self.side, request)


def _run(tmp_path: Path, workers: FakeWorkers) -> BaseRun:
    return new_base_run(tmp_path, workers.worker)


def test_a_peak_is_traced_once_then_read_back(tmp_path: Path) -> None:
    workers = FakeWorkers({"head": "new", "base": "old"}, {"head": 2_000_000, "base": 1_000_000})
    first = _run(tmp_path, workers).compare_memory(CASE)
    assert workers.traced() == workers.prepared() == ["head", "base"]
    assert (first.head_bytes, first.base_bytes, first.verdict) == (
        2_000_000,
        1_000_000,
        Verdict.REGRESSED,
    )
    rerun = FakeWorkers({"head": "new", "base": "old"}, {"head": 1, "base": 1})
    again = _run(tmp_path, rerun)
    assert again.compare_memory(CASE).verdict == Verdict.REGRESSED
    assert rerun.traced() == []
    assert rerun.prepared() == []
    assert len(again.reused_memory) == 2


def test_the_next_change_reads_its_base_back_from_the_head_it_was(tmp_path: Path) -> None:
    _run(
        tmp_path, FakeWorkers({"head": "v2", "base": "v1"}, {"head": 5_000, "base": 5_000})
    ).compare_memory(CASE)
    next_change = FakeWorkers({"head": "v3", "base": "v2"}, {"head": 5_100, "base": 1})
    result = _run(tmp_path, next_change).compare_memory(CASE)
    assert next_change.traced() == next_change.prepared() == ["head"]
    assert (result.head_bytes, result.base_bytes, result.verdict) == (5_100, 5_000, Verdict.SAME)


def test_identical_sides_are_both_traced_every_time(tmp_path: Path) -> None:
    for _ in range(2):
        workers = FakeWorkers({"head": "same", "base": "same"}, {"head": 7_000, "base": 7_000})
        _run(tmp_path, workers).compare_memory(CASE)
        assert workers.traced() == ["head", "base"]


def test_another_memray_traces_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(
        tmp_path, FakeWorkers({"head": "new", "base": "old"}, {"head": 9, "base": 9})
    ).compare_memory(CASE)
    real = base_run.package_version
    monkeypatch.setattr(
        base_run, "package_version", lambda name: "0.0-other" if name == "memray" else real(name)
    )
    workers = FakeWorkers({"head": "new", "base": "old"}, {"head": 9, "base": 9})
    _run(tmp_path, workers).compare_memory(CASE)
    assert workers.traced() == ["head", "base"]


@pytest.mark.parametrize(
    "text",
    ['{"peak_bytes": 0}', '{"peak_bytes": "12"}', '{"peak_bytes": true}', "[12]", '{"peak'],
)
def test_a_partial_or_foreign_peak_is_not_trusted(tmp_path: Path, text: str) -> None:
    path = tmp_path / "memory-key.json"
    path.write_text(text)
    assert read_memory_peak(path) is None
    assert read_memory_peak(tmp_path / "absent.json") is None
    path.write_text(json.dumps({"peak_bytes": 4096}))
    assert read_memory_peak(path) == 4096
