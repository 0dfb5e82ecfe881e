"""The two sides' workers, seen from ``BaseRun``: untimed work (a build, an identity) is asked
of both at once, and a failure on one side still reads the other's reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_base_run import new_base_run

from medgate.base.client import WorkerError
from medgate.base.run import BaseRun
from medgate.core.matrix import Case

CASE = Case("tiny_cnn", "compile", "fp32", 16, 1, "cpu")


class Recorder:
    """Both sides' workers: what each was sent and asked, in the order it happened."""

    def __init__(self, failing: str | None = None) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.failing = failing

    def worker(self, side: str) -> Side:
        return Side(self, side)


class Side:
    def __init__(self, recorder: Recorder, side: str) -> None:
        self.recorder, self.side = recorder, side

    def send(self, request: dict[str, Any]) -> None:
        self.recorder.events.append(("send", self.side, request["op"]))

    def receive(self, request: dict[str, Any]) -> dict[str, Any]:
        self.recorder.events.append(("receive", self.side, request["op"]))
        if self.side == self.recorder.failing:
            raise WorkerError(f"the {self.side} worker failed {request['op']}")
        if request["op"] == "identity":
            return {"engine": self.side}
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
