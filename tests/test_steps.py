"""A run's profile: each step's seconds exclusive of the steps nested in it, counted to the lane
of the test that spent them, and the rest of the lane as ``other``."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import RunSuite
from medgate.core import steps
from medgate.results.run import RunClock


def test_nested_steps_count_exclusively(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(steps.time, "perf_counter", lambda: now[0])
    before = steps.totals()
    with steps.step("test-build"):
        now[0] += 2
        with steps.step("test-calibrate"):
            now[0] += 5
        now[0] += 1
    spent = {k: v - before.get(k, 0.0) for k, v in steps.totals().items()}
    assert spent["test-build"] == pytest.approx(3)
    assert spent["test-calibrate"] == pytest.approx(5)


def test_the_profile_leaves_the_unnamed_rest_as_other() -> None:
    clock = RunClock()
    clock.lanes["accuracy"] = 10.0
    clock.steps["accuracy"] = {"evaluate": 6.0, "calibrate": 3.0}
    assert clock.profile() == {"accuracy": {"evaluate": 6.0, "calibrate": 3.0, "other": 1.0}}


def test_a_run_prints_where_its_seconds_went(
    suite_dir: Path, run_suite: RunSuite, tmp_path: Path
) -> None:
    result = run_suite(
        # A cache of its own: a graph calibrated by an earlier test would be found, not built.
        f"--cache-dir={tmp_path / 'cache'}",
        "-m",
        "accuracy or latency",
        "--backends=onnxruntime",
        "--precisions=int8-static",
        "--input-sizes=16",
        "-k",
        "not stages and not throughput",
    )
    assert result.parseoutcomes()["passed"] == 2
    lines = result.outlines[result.outlines.index("medgate: seconds per lane and step") :]
    accuracy = next(line for line in lines if line.strip().startswith("accuracy"))
    latency = next(line for line in lines if line.strip().startswith("latency"))
    # The session is built by the first test of it (accuracy runs first), timed by the other.
    assert "calibrate" in accuracy
    assert "evaluate" in accuracy
    assert "export" in accuracy
    assert "time" in latency
