"""Where a run's minutes go: wall seconds per step (train, export, convert, calibrate, compile,
build, evaluate, time, base), each exclusive of the steps nested in it, so a lane's steps add up
to at most its wall time. The results' ``RunClock`` attributes them to the lane of the test that
spent them."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

_totals: defaultdict[str, float] = defaultdict(float)
#: Open steps, innermost last: [name, seconds spent in steps nested in it].
_open: list[list[float | str]] = []


@contextmanager
def step(name: str) -> Iterator[None]:
    """Count the block's wall time to ``name``, less what nested steps count to themselves."""
    frame: list[float | str] = [name, 0.0]
    _open.append(frame)
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _open.pop()
        _totals[name] += elapsed - float(frame[1])
        if _open:
            _open[-1][1] = float(_open[-1][1]) + elapsed


def totals() -> dict[str, float]:
    """Seconds per step since the process started."""
    return dict(_totals)
