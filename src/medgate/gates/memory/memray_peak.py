"""The one place medgate reaches into pytest-memray: how it traces, and what it measured.

pytest-memray fails a test over its ``limit_memory`` but does not expose the peak it compared:
the memory gate re-reads the capture file pytest-memray keeps per test (its ``memray_manager``
plugin's ``results``) with memray's public ``FileReader``. It also turns on pytest-memray's
``--trace-python-allocators`` for every run, so a figure counts Python's objects rather than the
1 MiB pymalloc arenas that hold them: whether a build needs a fresh arena depends on the heap it
starts from, so an arena-counted figure moves by a whole arena with the tests that ran before.
``tests/test_reach_ins.py`` fails if pytest-memray stops keeping the captures or stops reading
the option.
"""

from __future__ import annotations

import pytest

#: How medgate's figures are traced, recorded beside the ceilings they were measured under.
TRACER = "memray, Python's allocators traced (objects, not pymalloc arenas), all threads"


class TracingError(RuntimeError):
    """pytest-memray traced a test in a way its figure cannot be compared with a ceiling."""


def trace_python_objects(config: pytest.Config) -> None:
    """Turn on pytest-memray's ``--trace-python-allocators`` (its ini key of the same name is
    shadowed by the option's default, so the option is what it reads)."""
    config.option.trace_python_allocators = True


def memray_peak(item: pytest.Item) -> int | None:
    """What ``limit_memory`` compared with its limit: the bytes live at the high watermark,
    summed over every thread (torch's and ONNX Runtime's pools allocate from their own).
    None when pytest-memray did not trace ``item``; ``TracingError`` when it traced without
    Python's allocators, as no ceiling medgate records is."""
    manager = item.config.pluginmanager.getplugin("memray_manager")
    result = manager.results.get(item.nodeid) if manager is not None else None
    if result is None:
        return None
    from memray import FileReader

    reader = FileReader(result.result_file)
    if not reader.metadata.trace_python_allocators:
        raise TracingError(
            f"{item.nodeid}: pytest-memray traced this test without Python's allocators, so its "
            "figure counts pymalloc arenas and cannot be held to medgate's ceilings; this "
            "pytest-memray no longer reads the option medgate sets (trace_python_allocators): "
            "pin pytest-memray to a release that does, or pass --trace-python-allocators"
        )
    records = reader.get_high_watermark_allocation_records(merge_threads=True)
    return sum(record.size for record in records)
