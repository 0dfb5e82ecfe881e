"""Both sides' rounds as pytest-benchmark runs of their own, so its tooling shows base against
head: with ``--benchmark-save=NAME`` or ``--benchmark-autosave`` a run against the base saves
``NNNN_<name>-base.json`` and ``NNNN_<name>-head.json`` in pytest-benchmark's storage, and
``pytest-benchmark compare NNNN NNNN`` (or ``--benchmark-compare``) reads them like any other.

Written with pytest-benchmark's public pieces: its storage loader, its ``Stats``, its machine-
and commit-info hooks and helpers; the layout of a saved benchmark is the one its own
``pytest_benchmark_generate_json`` writes.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from medgate.base.run import BaseRun, LatencyVsBase

LOG = logging.getLogger("medgate.base")


def _benchmark(result: LatencyVsBase, side: str, label: str) -> dict[str, Any]:
    from pytest_benchmark.stats import Stats

    case = result.case
    stats = Stats()
    for pair in result.pairs:
        for seconds in getattr(pair, side).seconds:
            stats.update(seconds)
    test = "test_latency" if case.batch == 1 else "test_throughput"
    medians = [getattr(pair, side).median for pair in result.pairs]
    return {
        "group": f"{case.model} {case.input_size}px bs{case.batch} {case.device}",
        "name": f"{test}[{case.id}]",
        "fullname": f"perf_tests/test_latency.py::{test}[{case.id}]",
        "params": {"medgate_case": case.id},
        "param": case.id,
        "extra_info": {
            "side": side,
            "revision": label,
            "pairs": len(result.pairs),
            "disturbed_pairs": result.disturbed,
            "rounds_per_block": result.rounds_per_block,
            "block_median_s": statistics.median(medians),
            "head_over_base": result.comparison.ratio,
            "verdict": str(result.verdict),
        },
        "options": {
            "disable_gc": True,
            "timer": "perf_counter",
            "min_rounds": result.rounds_per_block,
            "max_time": 0,
            "min_time": 0,
            "warmup": False,
        },
        "stats": {**stats.as_dict(), "data": list(stats.data), "iterations": 1},
    }


def save_sides(config: pytest.Config, run: BaseRun, results: Iterable[LatencyVsBase]) -> list[str]:
    """Save each side as a run of its own when pytest-benchmark was asked to save; the names."""
    save = config.getoption("benchmark_save", None) or (
        "medgate" if config.getoption("benchmark_autosave", False) else None
    )
    measured = sorted(results, key=lambda r: r.case.id)
    if not save or not measured:
        return []
    from pytest_benchmark.utils import get_commit_info, get_machine_id, load_storage

    storage = load_storage(
        config.getoption("benchmark_storage"),
        logger=LOG,
        default_machine_id=get_machine_id(),
        netrc=config.getoption("benchmark_netrc", None),
    )
    machine_info = config.hook.pytest_benchmark_generate_machine_info(config=config)
    config.hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine_info)
    saved = []
    for side, spec in (("base", run.base), ("head", run.head)):
        commit_info = dict(get_commit_info())
        commit_info.update(side=side, revision=spec.label)
        if side == "base":
            commit_info.update(id=spec.label.rsplit(" = ", 1)[-1], dirty=False)
        storage.save(
            {
                "machine_info": machine_info,
                "commit_info": commit_info,
                "benchmarks": [_benchmark(result, side, spec.label) for result in measured],
                "datetime": datetime.now(UTC).isoformat(),
                "version": _version(),
            },
            f"{save}-{side}",
        )
        saved.append(f"{save}-{side}")
    return saved


def _version() -> str:
    from importlib.metadata import version

    return version("pytest-benchmark")
