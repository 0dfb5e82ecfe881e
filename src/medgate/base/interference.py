"""Whether the machine was disturbed while a block was timed: CPU that the timed side did not
use, and time the hypervisor stole, read from ``/proc/stat`` around the block. A pair whose two
blocks saw different disturbance is left out of the verdict."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STAT = Path("/proc/stat")
#: ``/proc/stat`` counts in USER_HZ ticks.
TICK_S = 1 / os.sysconf("SC_CLK_TCK")

#: CPU of other processes, in cores, above which a block counts as disturbed.
MAX_OTHER_CORES = 0.3
#: ``/proc/stat`` counts whole ticks per CPU, and the worker's process time has its own
#: granularity: this much of "other" CPU in a block may be rounding, never a neighbour. A block
#: must be long against it (``--medgate-base-block-ms``) for the guard to see anything.
ROUNDING_S = 2 * TICK_S * (os.cpu_count() or 1)
#: Share of the block's wall time the hypervisor may steal before it counts as disturbed.
MAX_STEAL = 0.05


@dataclass(frozen=True)
class CpuTicks:
    busy: int
    steal: int

    @classmethod
    def now(cls) -> CpuTicks | None:
        """The machine's busy and stolen ticks so far, None where there is no /proc/stat."""
        try:
            fields = STAT.read_text().split("\n", 1)[0].split()
        except OSError:
            return None
        values = [int(value) for value in fields[1:]]
        # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
        padded = (values + [0] * 8)[:8]
        return cls(busy=sum(padded[:3]) + padded[5] + padded[6], steal=padded[7])


@dataclass(frozen=True)
class Disturbance:
    """Over one block: other processes' CPU in cores, and the stolen share of wall time."""

    other_cores: float
    steal_share: float

    #: The block's wall time, to tell rounding from other work.
    wall_s: float = 0.0

    @property
    def disturbed(self) -> bool:
        beyond_rounding = self.other_cores * self.wall_s > ROUNDING_S
        stolen = self.steal_share * self.wall_s > ROUNDING_S
        return (beyond_rounding and self.other_cores > MAX_OTHER_CORES) or (
            stolen and self.steal_share > MAX_STEAL
        )

    def differs_from(self, other: Disturbance) -> bool:
        """Whether the two blocks of a pair ran on differently loaded machines. A neighbour that
        loads both alike slows both alike, which the pair's ratio cancels; one that comes or
        goes between them does not."""
        wall_s = min(self.wall_s, other.wall_s)
        cores = abs(self.other_cores - other.other_cores)
        steal = abs(self.steal_share - other.steal_share)
        return (cores > MAX_OTHER_CORES and cores * wall_s > ROUNDING_S) or (
            steal > MAX_STEAL and steal * wall_s > ROUNDING_S
        )

    @classmethod
    def between(
        cls, before: CpuTicks | None, after: CpuTicks | None, own_cpu_s: float, wall_s: float
    ) -> Disturbance:
        """``own_cpu_s``: the CPU the measured worker used in the block (its process time)."""
        if before is None or after is None or wall_s <= 0:
            return cls(0.0, 0.0, wall_s)
        busy_s = (after.busy - before.busy) * TICK_S
        steal_s = (after.steal - before.steal) * TICK_S
        return cls(max(0.0, busy_s - own_cpu_s) / wall_s, steal_s / wall_s, wall_s)
