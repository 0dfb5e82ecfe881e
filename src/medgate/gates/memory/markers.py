"""The memory gate's pytest marker: pytest-memray's ``limit_memory`` at the case's ceiling."""

from __future__ import annotations

import os

import pytest

from medgate.core.matrix import Case
from medgate.gates.memory.run import MemoryLedger


def _host_memory_bytes() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def limit_memory_marks(
    ledger: MemoryLedger, case: Case, figure: str | None
) -> list[pytest.MarkDecorator]:
    """pytest-memray's ``limit_memory`` at the case's stored ceiling. A case with no ceiling yet
    is still measured (the marker is what turns memray on for a test), limited only by the
    machine's RAM, and reported as "no baseline"."""
    if figure is None:
        return []
    ceiling = None if ledger.update else ledger.ceiling(case, figure)
    limit = ceiling.ceiling_bytes if ceiling is not None else _host_memory_bytes()
    return [pytest.mark.limit_memory(f"{limit} B")]
