"""The one place medgate reads and extends pytest-benchmark's statistics of a test.

pytest-benchmark has no public call to add rounds after ``benchmark.pedantic``; the latency
gate's re-measurements must reach its JSON and ``--benchmark-compare`` all the same, so they go
through ``benchmark.stats.stats`` (its ``Stats`` object). ``tests/test_reach_ins.py`` fails if
that changes shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def timed_rounds(benchmark: Any) -> tuple[float, ...] | None:
    """The seconds of every round pytest-benchmark timed; None when it is disabled."""
    if benchmark.stats is None:
        return None
    return tuple(benchmark.stats.stats.data)


def add_rounds(benchmark: Any, seconds: Iterable[float]) -> None:
    """Count rounds timed outside ``pedantic`` in pytest-benchmark's statistics."""
    for value in seconds:
        benchmark.stats.stats.update(value)
