"""The memory gate's pytest marker: pytest-memray's ``limit_memory`` at the case's ceiling, and
which figures are traced elsewhere (the head's worker) or not at all, and so get none."""

from __future__ import annotations

import os

import pytest

from medgate.core.matrix import Case
from medgate.core.registry import get_backend
from medgate.gates.memory.run import MemoryLedger


def _host_memory_bytes() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def head_worker_traces_inference(case: Case, against_base: bool) -> bool:
    """Against a base, a CPU case's ``inference`` figure is the head worker's memray trace of one
    batch, the trace the base comparison reads anyway: the same session, batch and warm-up
    traced by the same library, so tracing it a second time in this process would only repeat
    it (and build the session here for nothing). A CUDA case is still run here, where its
    ``cuda_peak`` is read."""
    return against_base and case.device == "cpu"


def limit_memory_marks(
    ledger: MemoryLedger, case: Case, figure: str | None, against_base: bool = False
) -> list[pytest.MarkDecorator]:
    """pytest-memray's ``limit_memory`` at the case's stored ceiling. A case with no ceiling yet
    is still measured (the marker is what turns memray on for a test), limited only by the
    machine's RAM, and reported as "no baseline". A figure the head's worker traces gets no
    marker: the memory ledger holds it to its ceiling. A session figure the backend says is not
    its model's is skipped with the backend's reason."""
    if figure is None:
        return []
    if figure == "session" and get_backend(case.backend).no_session_figure:
        return [pytest.mark.skip(reason=get_backend(case.backend).no_session_figure)]
    if figure == "inference" and head_worker_traces_inference(case, against_base):
        return []
    ceiling = None if ledger.update else ledger.ceiling(case, figure)
    limit = ceiling.ceiling_bytes if ceiling is not None else _host_memory_bytes()
    return [pytest.mark.limit_memory(f"{limit} B")]
