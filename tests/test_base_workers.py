"""The two sides' workers, seen from ``BaseRun``: untimed work (a build, an identity) is asked
of both at once, and a failure on one side still reads the other's reply; work sent ahead is
not sent again, its failure is raised where its request is asked, and no block is timed while
a worker still owes a reply."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from fake_base_run import new_base_run

from medgate.base.client import WorkerError
from medgate.base.run import BaseRun
from medgate.core.matrix import Case

CASE = Case("tiny_cnn", "compile", "fp32", 16, 1, "cpu")
MEMORY_CASE = Case("tiny_cnn", "compile", "fp32", 16, 4, "cpu")
OTHER = Case("tiny_cnn", "eager", "fp32", 16, 1, "cpu")


class Recorder:
    """Both sides' workers: what each was sent and asked, in the order it happened."""

    def __init__(self, failing: str | None = None, failing_case: Case | None = None) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.failing = failing
        #: Only requests of this case fail on the failing side, when given.
        self.failing_case = failing_case

    def worker(self, side: str) -> Side:
        return Side(self, side)


class Side:
    def __init__(self, recorder: Recorder, side: str) -> None:
        self.recorder, self.side = recorder, side

    def send(self, request: dict[str, Any]) -> None:
        self.recorder.events.append(("send", self.side, request["op"]))

    def receive(self, request: dict[str, Any]) -> dict[str, Any]:
        self.recorder.events.append(("receive", self.side, request["op"]))
        failing_case = self.recorder.failing_case
        if self.side == self.recorder.failing and (
            failing_case is None or request.get("case") == asdict(failing_case)
        ):
            raise WorkerError(f"the {self.side} worker failed {request['op']}")
        if request["op"] == "identity":
            return {"engine": self.side}
        if request["op"] == "time":
            return {"seconds": [0.001] * request["rounds"], "request_cpu_s": 0.0}
        return {}

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive(request)


def _run(tmp_path: Path, recorder: Recorder) -> BaseRun:
    return new_base_run(tmp_path, recorder.worker)


def test_both_sides_build_at_once_and_once(tmp_path: Path) -> None:
    recorder = Recorder()
    run = _run(tmp_path, recorder)
    run._prepare(CASE)
    run._prepare(CASE)
    assert recorder.events == [
        ("send", "head", "prepare"),
        ("send", "base", "prepare"),
        ("receive", "head", "prepare"),
        ("receive", "base", "prepare"),
    ]


def test_identities_are_asked_of_both_at_once(tmp_path: Path) -> None:
    recorder = Recorder()
    identity = _run(tmp_path, recorder).identity("tiny_cnn")
    assert (identity.head, identity.base) == ({"engine": "head"}, {"engine": "base"})
    assert [event[0] for event in recorder.events] == ["send", "send", "receive", "receive"]


@pytest.mark.parametrize("failing", ["head", "base"])
def test_a_failed_side_still_reads_the_other_reply(tmp_path: Path, failing: str) -> None:
    recorder = Recorder(failing=failing)
    run = _run(tmp_path, recorder)
    with pytest.raises(WorkerError, match=f"the {failing} worker failed prepare"):
        run._prepare(CASE)
    assert ("receive", "head", "prepare") in recorder.events
    assert ("receive", "base", "prepare") in recorder.events
    assert run.failed
    recorder.failing = None
    run._prepare(CASE)
    assert recorder.events.count(("send", failing, "prepare")) == 2


def test_work_sent_ahead_is_not_sent_again(tmp_path: Path) -> None:
    recorder = Recorder()
    run = _run(tmp_path, recorder)
    run.ahead(CASE, "latency")
    assert recorder.events == [("send", "head", "prepare"), ("send", "base", "prepare")]
    run._prepare(CASE)
    assert recorder.events[2:] == [("receive", "head", "prepare"), ("receive", "base", "prepare")]


def test_no_block_is_timed_while_a_worker_owes_a_reply(tmp_path: Path) -> None:
    recorder = Recorder()
    run = _run(tmp_path, recorder)
    run._prepare(OTHER)
    run.ahead(MEMORY_CASE, "memory")
    run._block("base", OTHER, 3)
    timed = recorder.events.index(("send", "base", "time"))
    assert recorder.events.index(("receive", "head", "prepare"), 4) < timed
    assert recorder.events.index(("receive", "base", "prepare"), 4) < timed


def test_a_failure_ahead_is_raised_where_its_request_is_asked(tmp_path: Path) -> None:
    recorder = Recorder(failing="head", failing_case=MEMORY_CASE)
    run = _run(tmp_path, recorder)
    run._prepare(OTHER)
    run.ahead(MEMORY_CASE, "memory")
    run._block("head", OTHER, 3)
    assert run.failed
    with pytest.raises(WorkerError, match="the head worker failed prepare"):
        run._prepare(MEMORY_CASE, ("head",))
    recorder.failing = None
    run._prepare(MEMORY_CASE, ("head",))
    assert recorder.events.count(("send", "head", "prepare")) == 3


def test_the_base_evaluation_is_sent_ahead_only_when_none_is_stored(tmp_path: Path) -> None:
    recorder = Recorder()
    run = _run(tmp_path, recorder)
    case = Case("tiny_cnn", "eager", "fp32", 16, 8, "cpu")
    run.ahead(case, "accuracy")
    assert recorder.events[-1] == ("send", "base", "evaluate")
    run._ask("base", {"op": "evaluate", "case": asdict(case)})
    assert recorder.events.count(("send", "base", "evaluate")) == 1
    run._evaluation_path(case).parent.mkdir(parents=True)
    record = {"labels": [0], "predictions": [0], "positive_index": 1, "positive_scores": None}
    run._evaluation_path(case).write_text(json.dumps({**record, "dataset": "d"}))
    run.ahead(case, "accuracy")
    assert recorder.events.count(("send", "base", "evaluate")) == 1


def test_a_restart_forgets_the_replies_owed(tmp_path: Path) -> None:
    recorder = Recorder()
    run = _run(tmp_path, recorder)
    run.ahead(CASE, "latency")
    run.restart()
    run._prepare(CASE)
    assert recorder.events.count(("send", "head", "prepare")) == 2
