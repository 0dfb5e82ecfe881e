"""The one place medgate reads pytest-memray's measurement of a test.

pytest-memray fails a test over its ``limit_memory`` but does not expose the peak it compared:
the memory gate re-reads the capture file pytest-memray keeps per test (its ``memray_manager``
plugin's ``results``) with memray's public ``FileReader``. ``tests/test_reach_ins.py`` fails if
pytest-memray stops keeping them.
"""

from __future__ import annotations

import pytest


def memray_peak(item: pytest.Item) -> int | None:
    """What ``limit_memory`` compared with its limit: the bytes live at the high watermark,
    summed over every thread (torch's and ONNX Runtime's pools allocate from their own).
    None when pytest-memray did not trace ``item``."""
    manager = item.config.pluginmanager.getplugin("memray_manager")
    result = manager.results.get(item.nodeid) if manager is not None else None
    if result is None:
        return None
    from memray import FileReader

    records = FileReader(result.result_file).get_high_watermark_allocation_records(
        merge_threads=True
    )
    return sum(record.size for record in records)
