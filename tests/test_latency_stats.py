"""The latency gate's statistics and rules, on synthetic rounds with a known truth."""

from __future__ import annotations

import gc
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

import tiny_zoo  # noqa: F401  (registers tiny_cnn)
from medgate.core.fingerprint import Fingerprint
from medgate.core.matrix import Case
from medgate.core.verdict import Verdict
from medgate.gates.latency.run import LatencyLedger, machine_shift, stage_tolerance
from medgate.gates.latency.sampling import Rounds, measure, rounds_for
from medgate.gates.latency.stats import compare, noise
from medgate.gates.latency.store import (
    LatencyBaseline,
    read_latency_baseline,
    write_latency_baseline,
)

CASE = Case("tiny_cnn", "eager", "fp32", 16, 1, "cpu")


def machine(family: int, uarch: str, isa: list[str], cores: int = 2) -> Fingerprint:
    """Schema-2 facts of an "AMD EPYC": the brand string alone does not tell these apart."""
    return Fingerprint(
        {
            "fingerprint_schema": 2,
            "cpu_brand": "AMD EPYC",
            "cpu_family": family,
            "cpu_model": 1,
            "cpu_uarch": uarch,
            "cpu_isa": isa,
            "usable_cores": cores,
            "threads": cores,
        }
    )


HERE = machine(23, "zen1", ["avx2", "fma"])
ZEN5 = machine(26, "zen5", ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"])


def realistic(
    rng: np.random.Generator, n: int, scale: float = 1.0, run_shift: float = 0.03
) -> np.ndarray:
    """Round times as this machine gives them: lognormal jitter, a shift between runs (3 % sd),
    and 5 % of rounds interrupted (1.3-3x)."""
    rounds = scale * (1 + rng.normal(0, run_shift)) * rng.lognormal(0, 0.05, n)
    interrupted = rng.random(n) < 0.05
    rounds[interrupted] *= rng.uniform(1.3, 3.0, interrupted.sum())
    return rounds


def test_twenty_a_a_comparisons_raise_no_alarm() -> None:
    rng = np.random.default_rng(20)
    verdicts = [
        compare(realistic(rng, 60), realistic(rng, 60), tolerance=0.10).decided() for _ in range(20)
    ]
    assert Verdict.REGRESSED not in verdicts


def test_a_fifteen_percent_slowdown_is_regressed() -> None:
    """With runs that shift by 1 % sd; at 3 % a 15 % change reads anywhere from x1.07 to x1.23,
    and only a tolerance further from it can be relied on (the smoke measurements in the
    README say what this machine's runs do)."""
    rng = np.random.default_rng(15)
    for _ in range(20):
        before, after = realistic(rng, 60, run_shift=0.01), realistic(rng, 60, 1.15, 0.01)
        comparison = compare(before, after, tolerance=0.10)
        assert comparison.decided() == Verdict.REGRESSED, comparison.describe()


def test_a_change_at_the_tolerance_is_unsure_until_the_interval_is_narrow() -> None:
    spread = np.array([1.0, 0.9, 1.1, 1.0, 1.2, 0.8, 1.0, 1.05])
    few = compare(spread, spread * 1.10, tolerance=0.10)
    assert few.verdict == Verdict.TOO_NOISY
    assert not few.resolvable
    assert few.decided() == Verdict.TOO_NOISY  # still too noisy: it is not guessed


def test_a_narrow_interval_across_the_tolerance_is_decided_by_the_point_estimate() -> None:
    rng = np.random.default_rng(3)
    base = rng.lognormal(0, 0.01, 400)
    comparison = compare(base, base * 1.10, tolerance=0.10)
    assert comparison.verdict == Verdict.TOO_NOISY
    assert comparison.resolvable
    assert comparison.decided() == (Verdict.REGRESSED if comparison.ratio > 1.10 else "same")


def test_a_significant_drift_within_tolerance_is_same() -> None:
    rng = np.random.default_rng(4)
    base = rng.lognormal(0, 0.02, 200)
    comparison = compare(base, base * 1.04, tolerance=0.10)
    assert comparison.significant
    assert comparison.verdict == "same"


def test_noise_is_the_interquartile_range_over_the_median() -> None:
    assert noise([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)


def test_rounds_fill_the_time_between_the_minimum_and_the_cap() -> None:
    assert rounds_for(0.01, max_time=1.0, min_rounds=5) == 100
    assert rounds_for(1.0, max_time=1.0, min_rounds=5) == 5
    assert rounds_for(1e-6, max_time=1.0, min_rounds=5) == 200


@pytest.mark.parametrize("enabled_before", [True, False])
def test_no_collection_runs_when_a_block_starts_or_inside_it(
    enabled_before: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cyclic garbage made in every round would trigger the collector many times over; none
    runs inside the rounds, none is asked for when the block starts, and the collector is left
    as it was found."""
    asked: list[object] = []
    inside: list[int] = []
    in_round = [False]

    class Reference:
        def time_once(self) -> float:
            in_round[0] = True
            return 1e-6

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and in_round[0]:
            inside.append(info["generation"])

    def make_cycles() -> None:
        for _ in range(2000):
            cycle: list[object] = []
            cycle.append(cycle)
        in_round[0] = False

    monkeypatch.setattr(gc, "collect", lambda *args: asked.append(args))
    was = gc.isenabled()
    (gc.enable if enabled_before else gc.disable)()
    gc.callbacks.append(seen)
    try:
        rounds = measure({"model": make_cycles}, Reference(), 20)  # type: ignore[arg-type]
        assert gc.isenabled() is enabled_before
    finally:
        gc.callbacks.remove(seen)
        (gc.enable if was else gc.disable)()
    assert rounds.count == 20
    assert (asked, inside) == ([], [])


def _rounds(model: np.ndarray, reference: np.ndarray) -> Rounds:
    return Rounds(MappingProxyType({"model": tuple(model)}), tuple(reference))


def _ledger(tmp_path: Path, baseline: Rounds, fingerprint: Fingerprint = HERE) -> LatencyLedger:
    ledger = LatencyLedger(tmp_path, tmp_path, update=False, fingerprint=HERE)
    write_latency_baseline(
        tmp_path / "latency" / fingerprint.id / "tiny_cnn.json",
        LatencyBaseline("tiny_cnn", fingerprint, {CASE.id: baseline}),
    )
    return ledger


def test_an_unsure_case_is_measured_again_and_then_decided(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    ledger = _ledger(tmp_path, _rounds(realistic(rng, 60), realistic(rng, 60)))
    asked: list[int] = []

    def measure_more(count: int) -> Rounds:
        asked.append(count)
        return _rounds(realistic(rng, count, 1.25), realistic(rng, count))

    # Four wildly spread rounds first: only more rounds can tell.
    burst = np.array([0.4, 2.5, 0.4, 2.5]) * 1.25
    result = ledger.settle(CASE, CASE.id, _rounds(burst, realistic(rng, 4)), measure_more)
    assert asked == [4, 8]
    assert result.remeasures == 2
    assert result.status == "REGRESSED"
    assert result.rounds.count == 16


def test_a_slower_machine_is_told_apart_from_slower_code(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    ledger = _ledger(tmp_path, _rounds(realistic(rng, 80), realistic(rng, 80, 0.3)))

    def never(count: int) -> Rounds:
        raise AssertionError("decided without more rounds")

    # A neighbour takes 40 % of the machine: the case and the reference slow down together.
    # Milliseconds decide by default; the summary says the machine moved.
    busy_rounds = _rounds(realistic(rng, 80, 1.4), realistic(rng, 80, 0.42))
    busy = ledger.settle(CASE, CASE.id, busy_rounds, never)
    assert busy.judgement is not None
    assert machine_shift(busy.judgement.machine) == "slower"
    assert busy.judgement.basis == "ms"
    assert busy.status == "REGRESSED"
    assert "reference workload runs slower" in busy.note

    # In the reference's units (--latency-normalize=always) the machine's slowdown cancels...
    ledger.normalize = "always"
    assert ledger.settle(CASE, CASE.id, busy_rounds, never).status == "same"
    # ...and slower code on the busy machine still shows.
    both = ledger.settle(
        CASE, CASE.id, _rounds(realistic(rng, 80, 1.4 * 1.2), realistic(rng, 80, 0.42)), never
    )
    assert both.status == "REGRESSED"


def test_another_machine_is_refused_unless_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    there = ZEN5
    assert there.id != HERE.id
    ledger = _ledger(tmp_path, _rounds(realistic(rng, 60), realistic(rng, 60)), there)
    refused = ledger.settle(CASE, CASE.id, _rounds(realistic(rng, 60), realistic(rng, 60)), list)
    assert refused.status == "other machine"
    assert "cpu_family: 23 here, 26 there" in refused.note
    assert "cpu_uarch: 'zen1' here, 'zen5' there" in refused.note

    ledger.baseline_machine = there.id
    # Three times slower in milliseconds, the same in units of its reference workload.
    compared = ledger.settle(
        CASE, CASE.id, _rounds(realistic(rng, 60, 3), realistic(rng, 60, 3)), list
    )
    assert compared.judgement is not None
    assert compared.judgement.basis == "normalized"
    assert compared.status == "same"


def test_a_baseline_of_the_old_fingerprint_schema_is_refused_with_how_to_rerecord(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(10)
    old = Fingerprint({"cpu_model": "AMD EPYC", "usable_cores": 2, "threads": 2})
    assert old.schema == 1
    ledger = _ledger(tmp_path, _rounds(realistic(rng, 60), realistic(rng, 60)), old)
    now = _rounds(realistic(rng, 60), realistic(rng, 60))
    for named in (None, old.id):
        ledger.baseline_machine = named
        refused = ledger.settle(CASE, CASE.id, now, list)
        assert refused.status == "other machine"
        assert "fingerprint schema 1" in refused.note
        assert "--update-baselines" in refused.note


def test_a_baseline_round_trips_through_its_file(tmp_path: Path) -> None:
    rounds = _rounds(np.array([0.0012345, 0.002]), np.array([0.0003, 0.0004]))
    path = tmp_path / "m.json"
    write_latency_baseline(path, LatencyBaseline("tiny_cnn", HERE, {"k": rounds}))
    read = read_latency_baseline(path)
    assert read is not None
    assert read.fingerprint.id == HERE.id
    assert read.measurements["k"].series["model"] == pytest.approx((0.0012345, 0.002), abs=1e-7)


def test_a_fingerprint_id_names_the_machine_and_hashes_every_fact() -> None:
    assert HERE.id.startswith("amd-epyc-zen1-2c2t-")
    assert ZEN5.id.startswith("amd-epyc-zen5-2c2t-")
    other = Fingerprint({**HERE.facts, "runner": "ci"})
    assert other.id != HERE.id
    assert other.differences(HERE) == ["runner: 'ci' here, None there"]
    assert HERE.device_class("cpu") == "cpu-2core"


def test_a_stage_may_grow_by_the_tolerance_of_the_whole_model() -> None:
    assert stage_tolerance(0.10, stage_s=0.0001, whole_s=0.017) == pytest.approx(17.0)
    assert stage_tolerance(0.10, stage_s=0.015, whole_s=0.017) == pytest.approx(0.10 * 17 / 15)
    assert stage_tolerance(0.10, stage_s=0.020, whole_s=0.017) == 0.10
    assert stage_tolerance(0.10, stage_s=0.001, whole_s=None) == 0.10


def test_a_small_stage_that_drifts_is_not_a_regression_of_the_case(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    whole = _rounds(realistic(rng, 60, 17.0), realistic(rng, 60))
    head = Rounds(MappingProxyType({"head": tuple(realistic(rng, 60, 0.1))}), whole.reference)
    ledger = LatencyLedger(tmp_path, tmp_path, update=False, fingerprint=HERE)
    write_latency_baseline(
        tmp_path / "latency" / HERE.id / "tiny_cnn.json",
        LatencyBaseline("tiny_cnn", HERE, {CASE.id: whole, f"{CASE.id}:head": head}),
    )
    # The head takes 40 % longer: 0.04 of 17 time units.
    slower_head = Rounds(
        MappingProxyType({"head": tuple(realistic(rng, 60, 0.14))}), tuple(realistic(rng, 60))
    )
    result = ledger.settle(CASE, f"{CASE.id}:head", slower_head, list)
    assert result.status == "same"
    assert result.judgement is not None
    assert result.judgement.series[0].comparison.ratio > 1.3
