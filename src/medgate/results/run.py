"""The report at the end of a run: the wall time of each lane, the machine's peaks and power
measured after the last case, the document gathered and written."""

from __future__ import annotations

import datetime
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from medgate.core.energy import PowerModel, power_model
from medgate.core.peaks import Peaks, measure_peaks
from medgate.core.steps import totals
from medgate.results.collect import collect
from medgate.results.write import write_report
from medgate.workspace import Workspace

#: The lanes a test's markers name; a test with none of them counts as "other".
LANES = ("latency", "accuracy", "memory", "agreement")


@dataclass
class RunClock:
    """Seconds spent per lane (the setup, call and teardown of each test) and per step."""

    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    started_s: float = field(default_factory=time.perf_counter)
    lanes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: Case id -> the reason of a declared known failure (``xfail``) that failed as declared.
    known: dict[str, str] = field(default_factory=dict)
    #: Case id -> why a test of it was skipped (a combination this machine cannot run).
    skipped: dict[str, str] = field(default_factory=dict)
    #: Node ids of the collected tests that measure a case; only they are timed.
    case_tests: set[str] = field(default_factory=set)
    #: Tests of the run that ran a case (their call phase).
    cases: int = 0
    #: Lane -> step (``medgate.core.steps``) -> seconds its tests spent in it.
    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        """A pytest hook: what the test's steps took, counted to its lane."""
        before = totals()
        try:
            return (yield)
        finally:
            if item.nodeid in self.case_tests:
                spent = self.steps.setdefault(_lane(item.keywords), {})
                for name, seconds in totals().items():
                    delta = seconds - before.get(name, 0.0)
                    # The plugin trains a checkpoint before its model's first case, outside
                    # the case's phases, and counts it as the lane ``training``.
                    if delta > 0 and name != "train":
                        spent[name] = spent.get(name, 0.0) + delta

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A pytest hook (the clock is registered as a plugin): each phase's duration."""
        if report.nodeid not in self.case_tests:
            return
        self.cases += report.when == "call" or report.skipped
        self.lanes[_lane(report.keywords)] += report.duration
        case_id = report.nodeid.rsplit("[", 1)[-1][:-1]
        reason = getattr(report, "wasxfail", None)
        if reason is not None and report.skipped:
            self.known[case_id] = reason or "declared xfail"
        elif report.skipped and isinstance(report.longrepr, tuple):
            self.skipped.setdefault(case_id, report.longrepr[2].removeprefix("Skipped: "))

    def add_step(self, step: str, seconds: float) -> None:
        self.lanes[step] += seconds

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started_s

    def line(self) -> str:
        parts = [f"{lane} {seconds:.0f} s" for lane, seconds in self.lanes.items() if seconds]
        return f"wall time {self.wall_s:.0f} s: {', '.join(parts) or 'nothing ran'}"

    def profile(self) -> dict[str, dict[str, float]]:
        """Lane -> step -> seconds, the rest of the lane's time as ``other`` (fixtures,
        pytest, memray's tracing, what no step names)."""
        profile = {}
        for lane, seconds in self.lanes.items():
            spent = dict(sorted(self.steps.get(lane, {}).items(), key=lambda kv: -kv[1]))
            rest = seconds - sum(spent.values())
            profile[lane] = {**spent, **({"other": rest} if rest > 0.05 else {})}
        return profile

    def profile_lines(self) -> list[str]:
        return [
            f"  {lane:<10} {sum(spent.values()):6.0f} s  "
            + ", ".join(
                f"{name} {seconds:.{0 if seconds >= 10 else 1}f}" for name, seconds in spent.items()
            )
            for lane, spent in self.profile().items()
            if spent
        ]


def reused_notes(workspace: Workspace) -> list[str]:
    """What the run read back instead of evaluating again, and why that is the same figure."""
    notes = []
    reused = workspace.reused_evaluations
    if reused:
        notes.append(
            f"{len(reused)} accuracy evaluation(s) read back from "
            f"{workspace.evaluations.directory}: the same ONNX Runtime graph, runtime, threads "
            f"and input tensors on this machine as an earlier run (e.g. {', '.join(reused[:3])})"
        )
    replayed = workspace.replayed_evaluations
    if replayed:
        notes.append(
            f"{len(replayed)} accuracy evaluation(s) replayed from "
            f"{workspace.evaluations.directory}: the first test batch gave an earlier run's "
            "logits to the bit, under the same model code, weights, libraries, threads, input "
            "tensors and machine, so the other batches were read back "
            f"(e.g. {', '.join(replayed[:3])})"
        )
    shared = workspace.agreement_from_evaluations
    if shared:
        notes.append(
            f"{len(shared)} agreement case(s) judged on the logits their accuracy evaluation "
            "computed or read back for the same first test images, session and batch "
            f"(e.g. {', '.join(shared[:3])})"
        )
    base = workspace.base
    if base is not None and base.reused_evaluations:
        notes.append(
            f"{len(base.reused_evaluations)} base evaluation(s) read back from "
            f"{workspace.evaluations.directory}: the base's engine, model code, weights, data and "
            "versions, the threads and the machine as an earlier run "
            f"(e.g. {', '.join(base.reused_evaluations[:3])})"
        )
    if base is not None and base.reused_memory:
        notes.append(
            f"{len(base.reused_memory)} memory peak(s) against the base read back from "
            f"{workspace.evaluations.directory}: the side's engine, model code, weights, data and "
            "versions, memray, the tracing harness, the threads and the machine as an earlier "
            f"run (e.g. {', '.join(base.reused_memory[:3])})"
        )
    return notes


def _lane(keywords: Any) -> str:
    return next((name for name in LANES if name in keywords), "other")


OUTCOMES = {0: "passed", 1: "failed", 2: "interrupted", 5: "passed"}


def machine_roofs(workspace: Workspace) -> tuple[Peaks | None, PowerModel | None]:
    """The peaks and the power model of the device the run timed on; none when nothing was
    timed (no latency figure to hold against them)."""
    config = workspace.config
    timed = [r.case for r in workspace.latency.results.values()]
    if workspace.base is not None:
        timed += list(workspace.base.latency)
    if not timed:
        return None, None
    device = "cuda" if any(c.device == "cuda" for c in timed) else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        device = "cpu"
    peaks = measure_peaks(device, config.threads, config.peak_size)
    size = config.peak_size
    a = torch.randn(size, size, device=device)

    def load() -> None:
        torch.mm(a, a)
        if device == "cuda":
            torch.cuda.synchronize()

    return peaks, power_model(device, config.threads, config.watts_per_thread, load)


@dataclass(frozen=True)
class WrittenReport:
    path: Path
    document: dict[str, Any]


def finish_report(workspace: Workspace, clock: RunClock, exitstatus: int) -> WrittenReport | None:
    """Write the run's report under ``--medgate-report``; None when it is off or when the run
    measured no case (a session of other tests that merely loads the plugin)."""
    directory = workspace.config.report_dir
    if directory is None or not clock.cases:
        return None
    started = time.perf_counter()
    peaks, power = machine_roofs(workspace)
    clock.add_step("peaks", time.perf_counter() - started)
    notes = [note for gate in workspace.gates for note in gate.notes]
    notes.extend(reused_notes(workspace))
    document = collect(
        workspace,
        started=clock.started,
        wall_s=clock.wall_s,
        lanes_s=clock.lanes,
        steps_s=clock.profile(),
        outcome=OUTCOMES.get(int(exitstatus), "error"),
        peaks=peaks,
        power=power,
        notes=notes,
        known=clock.known,
        skipped=clock.skipped,
    )
    written = write_report(document, directory)
    clock.add_step("report", time.perf_counter() - started)
    return WrittenReport(written, document)
