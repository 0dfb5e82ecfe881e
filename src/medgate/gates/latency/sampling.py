"""Timed rounds: every round of a case is preceded by one run of the reference workload, and
the garbage collector is paused for the whole block, so a collection never lands in a round."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

from medgate.gates.latency.reference_workload import ReferenceWorkload

#: Rounds of one measurement at the most, however fast the case: past this a sample says no
#: more about the median, and the reference workload's share of the run grows.
MAX_ROUNDS = 200


@dataclass(frozen=True)
class Rounds:
    """Seconds per round of each timed series (``model``; or ``preprocess``, ``features``,
    ``head``) and of the reference workload run just before that round."""

    series: Mapping[str, tuple[float, ...]]
    reference: tuple[float, ...]

    def __post_init__(self) -> None:
        for name, samples in self.series.items():
            if len(samples) != len(self.reference):
                raise ValueError(
                    f"series {name!r} has {len(samples)} rounds, the reference "
                    f"{len(self.reference)}; each round times both"
                )

    @property
    def count(self) -> int:
        return len(self.reference)

    def normalized(self, name: str) -> tuple[float, ...]:
        """Each round's time over the reference workload's time next to it."""
        return tuple(t / r for t, r in zip(self.series[name], self.reference, strict=True))

    def extend(self, more: Rounds) -> Rounds:
        if set(more.series) != set(self.series):
            raise ValueError(f"cannot pool series {sorted(more.series)} into {sorted(self.series)}")
        return Rounds(
            MappingProxyType({name: self.series[name] + more.series[name] for name in self.series}),
            self.reference + more.reference,
        )


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off for the block, as pytest-benchmark's ``--benchmark-disable-gc`` and
    ``timeit`` do, with no full collection first: disabled, it cannot run inside a round, and
    a full collection traverses the whole heap, which in a long run (the nightly lane) grows
    with inductor's and dynamo's compiled code to about a second per block."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def rounds_for(seconds_per_round: float, max_time: float, min_rounds: int) -> int:
    """As many rounds as fit in ``max_time`` (pytest-benchmark's ``--benchmark-max-time``),
    at least ``min_rounds`` (``--benchmark-min-rounds``), at most ``MAX_ROUNDS``."""
    fitting = int(max_time / seconds_per_round) if seconds_per_round > 0 else MAX_ROUNDS
    return max(min_rounds, min(fitting, MAX_ROUNDS))


def measure(
    steps: Mapping[str, Callable[[], object]], reference: ReferenceWorkload, rounds: int
) -> Rounds:
    """``rounds`` rounds; each times the reference, then every step in order."""
    timings: dict[str, list[float]] = {name: [] for name in steps}
    references: list[float] = []
    clock = time.perf_counter
    with gc_paused():
        for _ in range(rounds):
            references.append(reference.time_once())
            for name, step in steps.items():
                started = clock()
                step()
                timings[name].append(clock() - started)
    return Rounds(
        MappingProxyType({name: tuple(values) for name, values in timings.items()}),
        tuple(references),
    )
