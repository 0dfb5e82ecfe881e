"""What every gate shares with the run: it records under ``--update-baselines``, writes its
stores at the session's end, and leaves notes for the summary. The plugin drives every gate
through this protocol alone."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


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

    def write(self) -> list[Path]:
        """Merge this run's recordings into the gate's stores, atomically; the written paths."""
        ...
