"""Where medgate uses another plugin beyond its public API, a test that fails when that plugin's
internals change, so the break shows here rather than as a silently missing figure."""

from __future__ import annotations

from typing import Any

import pytest

from medgate.gates.latency.benchmark_stats import add_rounds, timed_rounds


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
        from medgate.gates.memory.memray_peak import memray_peak

        PEAKS = {}

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
