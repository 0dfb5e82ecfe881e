"""Energy per inference, as an estimate: busy time x the power one busy thread (or the GPU) draws.

The power comes from the best source the machine has, and the report names it:

- ``rapl``: the CPU package's RAPL energy counters (``/sys/class/powercap``), read idle and under
  a GEMM on the run's threads; the difference per thread is what one busy thread adds.
- ``nvml``: the GPU's board power under a GEMM (``torch.cuda.power_draw``).
- ``assumed``: ``--medgate-watts-per-thread`` (a server core under load draws a few watts: an
  EPYC 7763 is 280 W over 64 cores, a Xeon 8480+ 350 W over 56). Nothing is measured; the
  report says so.

codecarbon, the maintained estimator, is not used: it depends on the original py-cpuinfo, which
installs the same ``cpuinfo`` module as the py-cpuinfo2 fork pytest-benchmark needs, and its
offline CPU model is a TDP table times load, the same kind of figure as ``assumed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class PowerModel:
    source: str
    #: Watts one busy thread adds on CPU; the board's watts under load on a GPU.
    watts: float
    detail: str

    def joules(self, busy_s: float, threads: int, device: str) -> float:
        """Energy of ``busy_s`` seconds of an inference that keeps ``threads`` threads busy."""
        return busy_s * self.watts * (1 if device == "cuda" else threads)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "watts": self.watts, "detail": self.detail}


def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """Readable package-level RAPL counters (``intel-rapl:N``; AMD's driver uses the same)."""
    if not root.is_dir():
        return []
    found = []
    for zone in sorted(root.glob("intel-rapl:*")):
        counter = zone / "energy_uj"
        if zone.name.count(":") == 1 and counter.is_file():
            try:
                int(counter.read_text())
            except (OSError, ValueError):
                continue
            found.append(counter)
    return found


def _read_joules(counters: list[Path]) -> float:
    return sum(int(counter.read_text()) for counter in counters) / 1e6


def rapl_watts(counters: list[Path], work: Callable[[], None], seconds: float = 0.5) -> float:
    """Average package watts over ``seconds`` of repeating ``work`` (idle: a sleep)."""
    before, started = _read_joules(counters), time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
    elapsed = time.perf_counter() - started
    return max(0.0, (_read_joules(counters) - before) / elapsed)


def power_model(
    device: str,
    threads: int,
    assumed_watts: float,
    load: Callable[[], None],
    root: Path = POWERCAP,
) -> PowerModel:
    """The power model of this machine; ``load`` is a GEMM on ``threads`` threads (or the GPU)."""
    if device == "cuda":
        try:
            import torch

            load()
            watts = torch.cuda.power_draw() / 1000
            return PowerModel("nvml", watts, "GPU board power under a GEMM (NVML)")
        except Exception as error:  # no NVML bindings, or a GPU that does not report power
            return _assumed(assumed_watts, f"no GPU power reading ({error})")
    counters = rapl_packages(root)
    if counters:
        try:
            idle = rapl_watts(counters, lambda: time.sleep(0.05))
            busy = rapl_watts(counters, load)
        except OSError as error:
            return _assumed(assumed_watts, f"RAPL counters unreadable ({error})")
        per_thread = max(0.0, busy - idle) / threads
        return PowerModel(
            "rapl",
            per_thread,
            f"RAPL package energy: {idle:.1f} W idle, {busy:.1f} W under a GEMM on {threads} "
            "threads; shared with every process on the package",
        )
    return _assumed(assumed_watts, f"no RAPL counters under {root}")


def _assumed(watts: float, why: str) -> PowerModel:
    return PowerModel(
        "assumed",
        watts,
        f"{why}: {watts:g} W per busy thread assumed (--medgate-watts-per-thread)",
    )
