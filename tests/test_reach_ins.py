"""Where medgate uses another plugin beyond its public API, a test that fails when that plugin's
internals change, so the break shows here rather than as a silently missing figure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from medgate.gates.latency.benchmark_stats import add_rounds, timed_rounds
from medgate.gates.memory.memray_peak import TracingError, memray_peak


def test_rounds_added_after_pedantic_reach_pytest_benchmarks_statistics(benchmark: Any) -> None:
    benchmark.pedantic(lambda: None, rounds=3)
    timed = timed_rounds(benchmark)
    assert timed is not None
    assert len(timed) == 3
    add_rounds(benchmark, [1.0, 2.0])
    assert benchmark.stats.stats.rounds == 5
    assert benchmark.stats.stats.max == 2.0
    assert timed_rounds(benchmark) == (*timed, 1.0, 2.0)


def test_memray_peak_reads_what_limit_memory_measured(pytester: pytest.Pytester) -> None:
    """A test that keeps 8 MiB alive at its peak reads at least 8 MiB, at most a little more."""
    pytester.makeconftest(
        """
        import pytest
        from medgate.gates.memory.memray_peak import memray_peak, trace_python_objects

        PEAKS = {}

        def pytest_configure(config):
            trace_python_objects(config)

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(item, call):
            yield
            if call.when == "call":
                PEAKS[item.name] = memray_peak(item)

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"PEAKS {PEAKS}")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.limit_memory("1 GB")
        def test_traced():
            block = bytearray(8 * 2**20)
            assert len(block) == 8 * 2**20

        def test_untraced():
            pass
        """
    )
    result = pytester.runpytest("-p", "memray", "-p", "no:medgate", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    (line,) = [line for line in result.outlines if line.startswith("PEAKS ")]
    peaks = eval(line.removeprefix("PEAKS "))
    assert peaks["test_untraced"] is None
    assert 8 * 2**20 <= peaks["test_traced"] < 9 * 2**20


#: A pytester conftest: the peak of each traced test, read as medgate reads it or straight from
#: pytest-memray's capture, with Python's allocators traced when TRACE is set.
PEAK_PROBE = """
import os

import pytest
from memray import FileReader

from medgate.gates.memory.memray_peak import memray_peak, trace_python_objects

PEAKS = {}


def pytest_configure(config):
    if os.environ.get("TRACE"):
        trace_python_objects(config)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    if call.when != "call" or item.get_closest_marker("limit_memory") is None:
        return
    if os.environ.get("TRACE"):
        PEAKS[item.name] = memray_peak(item)
    else:
        manager = item.config.pluginmanager.getplugin("memray_manager")
        reader = FileReader(manager.results[item.nodeid].result_file)
        records = reader.get_high_watermark_allocation_records(merge_threads=True)
        PEAKS[item.name] = sum(record.size for record in records)


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"PEAKS {PEAKS}")
"""

#: The same build (20,000 small objects, pymalloc's size classes) traced after a heap with no
#: free room in its arenas and after one that freed every other object of a 40,000: untraced,
#: the second build fills the freed blocks and maps fewer 1 MiB arenas.
HEAP_STATES = """
import pytest

KEPT = []


def build():
    return [bytearray(100) for _ in range(20_000)]


def test_a_fragment_the_heap():
    KEPT.extend(bytearray(100) for _ in range(40_000))
    del KEPT[::2]


@pytest.mark.limit_memory("1 GB")
def test_b_after_fragmented():
    assert len(build()) == 20_000


def test_c_fill_the_holes():
    KEPT.extend(bytearray(100) for _ in range(40_000))


@pytest.mark.limit_memory("1 GB")
def test_d_after_full():
    assert len(build()) == 20_000
"""


def _peaks(pytester: pytest.Pytester, trace: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRACE", "1" if trace else "")
    result = pytester.runpytest_subprocess("-p", "memray", "-p", "no:medgate", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    (line,) = [line for line in result.outlines if line.startswith("PEAKS ")]
    return eval(line.removeprefix("PEAKS "))


def test_traced_objects_measure_a_build_the_same_whatever_heap_it_starts_from(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(PEAK_PROBE)
    pytester.makepyfile(HEAP_STATES)
    traced = _peaks(pytester, True, monkeypatch)
    arenas = _peaks(pytester, False, monkeypatch)
    assert abs(traced["test_b_after_fragmented"] - traced["test_d_after_full"]) < 2**16
    # What the tracing is for: counted as arenas, the build that fills freed blocks maps
    # (almost) no new arena and reads megabytes less than the same build on a full heap.
    assert abs(arenas["test_b_after_fragmented"] - arenas["test_d_after_full"]) >= 2**19


def test_an_untraced_capture_is_refused_not_compared(tmp_path: Path) -> None:
    """Were pytest-memray to stop reading the option, its captures would count arenas: the
    figure is refused with the fix rather than held to a ceiling recorded on objects."""
    from memray import Tracker

    capture = tmp_path / "capture.bin"
    with Tracker(capture):
        kept = [bytearray(100) for _ in range(1_000)]
    assert len(kept) == 1_000
    results = {"test_x": SimpleNamespace(result_file=capture)}
    manager = SimpleNamespace(results=results)
    config = SimpleNamespace(pluginmanager=SimpleNamespace(getplugin=lambda name: manager))
    item = cast(pytest.Item, SimpleNamespace(nodeid="test_x", config=config))
    with pytest.raises(TracingError, match=r"test_x: .*without Python's allocators.*trace-python"):
        memray_peak(item)
