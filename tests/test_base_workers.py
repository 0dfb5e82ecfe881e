"""The two sides' workers, seen from ``BaseRun``: untimed work (a build, an identity) is asked
of both at once, and a failure on one side still reads the other's reply."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_base_run import new_base_run

from medgate.base.client import WorkerError
from medgate.base.run import BaseRun
from medgate.core.matrix import Case
from medgate.core.verdict import Verdict

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


class Timed:
    """Both sides' workers as the pairs see them: a block is ``rounds`` rounds of the side's
    ``seconds``, all moved by one lognormal factor of spread ``noise`` (a pair's noise is its
    blocks', not their rounds'). Counts the blocks timed."""

    def __init__(self, head_s: float, noise: float, seed: int = 0) -> None:
        self.seconds = {"head": head_s, "base": 1e-3}
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.blocks = {"head": 0, "base": 0}

    def worker(self, side: str) -> TimedSide:
        return TimedSide(self, side)


class TimedSide:
    def __init__(self, timed: Timed, side: str) -> None:
        self.timed, self.side = timed, side

    def send(self, request: dict[str, Any]) -> None:
        """Answered when received."""

    def receive(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.ask(request)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] != "time":
            return {}
        self.timed.blocks[self.side] += 1
        mean = self.timed.seconds[self.side]
        block = mean * self.timed.rng.lognormal(0, self.timed.noise)
        return {"seconds": [block] * int(request["rounds"]), "request_cpu_s": 0.0}


@pytest.mark.parametrize(
    ("head_s", "noise", "verdict", "pairs"),
    [
        # A clear case, either way, is decided at the first look: half the planned pairs.
        (1e-3, 0.01, Verdict.SAME, 8),
        (1.2e-3, 0.01, Verdict.REGRESSED, 8),
        # A block-to-block spread wider than the tolerance never decides early: every look up
        # to three times the planned pairs, then TOO NOISY.
        (1e-3, 0.3, Verdict.TOO_NOISY, 48),
    ],
)
def test_the_first_look_comes_after_half_the_planned_pairs_the_last_at_three_times(
    tmp_path: Path, head_s: float, noise: float, verdict: Verdict, pairs: int
) -> None:
    timed = Timed(head_s, noise)
    run = new_base_run(tmp_path, timed.worker)
    assert run.config.base_pairs == 16
    comparison, taken, _ = run._pairs_until_verdict(CASE, 0.05, random.Random(0))
    assert comparison.decided() == verdict
    assert len(taken) == pairs
    # Each side: the block that sizes the rounds (``_rounds_per_block``), then one per pair.
    assert timed.blocks == {"head": pairs + 1, "base": pairs + 1}
