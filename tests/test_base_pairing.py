"""The paired statistics and the interference guard of a run against the base revision."""

from __future__ import annotations

import numpy as np
import pytest

from medgate.base.interference import TICK_S, CpuTicks, Disturbance
from medgate.base.pairing import Block, Pair, compare_pairs
from medgate.core.verdict import Verdict

QUIET = Disturbance(0.0, 0.0, 0.2)
BUSY = Disturbance(1.0, 0.0, 0.2)


def _pairs(
    rng: np.random.Generator, slowdown: float, count: int, drift: float = 0.3, noise: float = 0.01
) -> list[Pair]:
    """Each pair on a machine whose speed moves by up to ``drift`` between pairs."""
    pairs = []
    for _ in range(count):
        speed = float(rng.uniform(1 - drift, 1 + drift))
        base = tuple(speed * rng.lognormal(0, noise, 10))
        head = tuple(speed * slowdown * rng.lognormal(0, noise, 10))
        pairs.append(Pair(Block(base, QUIET), Block(head, QUIET), bool(rng.random() < 0.5)))
    return pairs


def test_a_and_a_reads_same_in_every_one_of_forty_runs_while_the_machine_drifts() -> None:
    rng = np.random.default_rng(1)
    verdicts = [compare_pairs(_pairs(rng, 1.0, 12), 0.05).decided() for _ in range(40)]
    assert verdicts.count(Verdict.REGRESSED) == 0
    assert verdicts.count(Verdict.SAME) == 40


def test_ten_percent_slower_is_regressed_whatever_the_drift() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        comparison = compare_pairs(_pairs(rng, 1.10, 12), 0.05)
        assert comparison.decided() == Verdict.REGRESSED, comparison.describe()
        assert 1.08 < comparison.ratio < 1.12


def test_a_change_at_the_tolerance_is_not_guessed_from_few_pairs() -> None:
    comparison = compare_pairs(_pairs(np.random.default_rng(3), 1.05, 12, noise=0.2), 0.05)
    assert comparison.verdict == Verdict.TOO_NOISY


def test_disturbed_pairs_never_decide_a_verdict_on_their_own() -> None:
    rng = np.random.default_rng(4)
    clean = _pairs(rng, 1.0, 12)
    # Disturbed pairs that read 3x slower are set aside: the clean ones still say same.
    hogged = [
        Pair(Block(p.base.seconds, QUIET), Block(tuple(3 * s for s in p.head.seconds), BUSY), True)
        for p in _pairs(rng, 1.0, 12)
    ]
    mixed = compare_pairs(clean + hogged, 0.05, min_pairs=12)
    assert mixed.clean == 12
    assert mixed.decided() == Verdict.SAME
    # A neighbour that loads both blocks alike is cancelled by the pair: those pairs count.
    steady = [
        Pair(Block(p.base.seconds, BUSY), Block(p.head.seconds, BUSY), True)
        for p in _pairs(rng, 1.0, 12)
    ]
    assert all(pair.loaded and not pair.disturbed for pair in steady)
    # ... but load dilutes a slowdown (both blocks wait alike): a loaded "same" is not trusted,
    # while a slowdown that shows through the load is still one.
    assert compare_pairs(steady, 0.05).decided() == Verdict.TOO_NOISY
    slower = [
        Pair(Block(p.base.seconds, BUSY), Block(p.head.seconds, BUSY), True)
        for p in _pairs(rng, 1.15, 12)
    ]
    assert compare_pairs(slower, 0.05).decided() == Verdict.REGRESSED
    # With only disturbed pairs there is no verdict either way.
    only = compare_pairs(hogged, 0.05, min_pairs=8)
    assert only.clean == 0
    assert only.decided() == Verdict.TOO_NOISY


def test_a_block_is_disturbed_by_other_processes_cpu_or_by_steal() -> None:
    second = round(1 / TICK_S)
    before = CpuTicks(busy=1000, steal=10)
    # One second of wall time; the worker used all the CPU the machine was busy with: quiet.
    assert not Disturbance.between(before, CpuTicks(1000 + second, 10), 1.0, 1.0).disturbed
    # Someone else kept a whole core busy.
    hog = Disturbance.between(before, CpuTicks(1000 + 2 * second, 10), 1.0, 1.0)
    assert hog.other_cores == pytest.approx(1.0)
    assert hog.disturbed
    # The hypervisor stole 10 % of the block.
    stolen = Disturbance.between(before, CpuTicks(1000 + second, 10 + second // 10), 1.0, 1.0)
    assert stolen.disturbed
    # In a block as short as the counters' rounding, nothing can be told apart from rounding.
    assert not Disturbance.between(before, CpuTicks(1002, 10), 0.0, 0.01).disturbed
    # No /proc/stat: nothing can be said, nothing is marked.
    assert not Disturbance.between(None, None, 0.2, 0.2).disturbed


def test_proc_stat_is_read_where_there_is_one() -> None:
    ticks = CpuTicks.now()
    if ticks is None:
        pytest.skip("this machine has no /proc/stat")
    assert ticks.busy > 0


def test_a_second_read_confirms_a_regression_by_its_point_estimate_and_significance() -> None:
    rng = np.random.default_rng(5)
    assert compare_pairs(_pairs(rng, 1.09, 12, noise=0.05), 0.05).confirms_regression
    assert not compare_pairs(_pairs(rng, 1.0, 12), 0.05).confirms_regression
    # Too few pairs the machine left alone: no confirmation either.
    assert not compare_pairs(_pairs(rng, 1.09, 4), 0.05, min_pairs=8).confirms_regression
