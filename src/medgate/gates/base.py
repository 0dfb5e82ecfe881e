"""What every gate shares with the run: it judges each measurement against a reference into one
``Verdict`` (``medgate.core.verdict``), records under ``--update-baselines``, writes its stores at
the session's end, and leaves notes for the summary. The plugin drives every gate through this
protocol alone; each gate's ``measure`` module says what it measures for a case."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from medgate.core.verdict import Verdict


@runtime_checkable
class Gate(Protocol):
    #: True under ``--update-baselines``: measurements are recorded, not judged.
    update: bool
    #: What the run's summary must say beyond the tables (a section replaced, a file refused).
    notes: list[str]

    @property
    def lane(self) -> str:
        """The gate's name, as markers and tables spell it."""
        ...

    def verdicts(self) -> dict[str, Verdict]:
        """Every judged measurement of this run, by case id (and figure or stage), and the
        verdict it got."""
        ...

    def write(self) -> list[Path]:
        """Merge this run's recordings into the gate's stores, atomically; the written paths."""
        ...
