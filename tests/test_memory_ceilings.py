"""Memory ceilings: how they are derived, stored and compared."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgate.core.files import BaselineError
from medgate.core.matrix import Case
from medgate.core.verdict import GateFailure, Verdict, require
from medgate.gates.memory.markers import limit_memory_marks
from medgate.gates.memory.run import MIN_SLACK_BYTES, MemoryLedger, ceiling_for
from medgate.gates.memory.store import read_memory_baseline

CASE = Case("tiny_cnn", "eager", "fp32", 16, 16, "cuda")


def test_a_ceiling_adds_the_headroom_or_the_figures_minimum_slack() -> None:
    assert ceiling_for("inference", 100 * 2**20, 0.10) == 110 * 2**20
    assert ceiling_for("session", 1000, 0.10) == 1000 + MIN_SLACK_BYTES["session"]


def test_recorded_ceilings_gate_the_next_run(tmp_path: Path) -> None:
    recording = MemoryLedger(tmp_path, tmp_path, update=True, headroom=0.10, threads=2)
    assert recording.observe(CASE, "cuda_peak", 1000, 10, None).verdict == "recorded"
    (path,) = recording.write()
    stored = read_memory_baseline(path)
    assert stored is not None
    assert stored.cases["eager-fp32-16-bs16-cuda"]["cuda_peak"].ceiling_bytes == 1100
    assert stored.depends_on["threads"] == 2

    gating = MemoryLedger(tmp_path, tmp_path, update=False, headroom=0.10, threads=2)
    held = gating.observe(CASE, "cuda_peak", 1099, 10, None)
    assert held.verdict == Verdict.OK
    assert gating.problems(held) == []
    over = gating.observe(CASE, "cuda_peak", 1100, 10, None)
    assert over.verdict == Verdict.BEYOND_LIMIT
    (problem,) = gating.problems(over)
    assert "cuda_peak 1100 B >= ceiling 1100 B" in problem
    with pytest.raises(GateFailure, match="cuda_peak 1100 B"):
        require(CASE.id, gating.problems(over))
    assert (
        gating.observe(
            Case("tiny_cnn", "eager", "fp32", 32, 16, "cuda"), "cuda_peak", 5, 10, None
        ).verdict
        == Verdict.NO_BASELINE
    )


def test_an_unknown_figure_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "memory" / "m.json"
    path.parent.mkdir()
    path.write_text('{"schema": 1, "model": "m", "headroom": 0.1, "cases": {"c": {"vram": {}}}}')
    with pytest.raises(BaselineError, match=r"m\.json: field cases\.c\.vram: unknown figure"):
        read_memory_baseline(path)


def test_against_a_base_only_a_cpu_inference_figure_is_left_to_the_head_worker(
    tmp_path: Path,
) -> None:
    ledger = MemoryLedger(tmp_path, tmp_path, update=False, headroom=0.10, threads=2)
    cpu = Case("tiny_cnn", "eager", "fp32", 16, 16, "cpu")
    assert limit_memory_marks(ledger, cpu, "inference", against_base=True) == []
    assert [m.name for m in limit_memory_marks(ledger, cpu, "inference")] == ["limit_memory"]
    assert [m.name for m in limit_memory_marks(ledger, cpu, "session", True)] == ["limit_memory"]
    # A CUDA case still runs its batch in the pytest process, where its cuda_peak is read.
    assert [m.name for m in limit_memory_marks(ledger, CASE, "inference", True)] == ["limit_memory"]
    traced = ledger.observe(cpu, "inference", 10**9, 10, None, traced_in="the head's worker")
    assert traced.verdict == Verdict.NO_BASELINE
    assert ledger.problems(traced) == []
