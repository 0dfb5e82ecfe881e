"""The memory lane end to end: a case that allocates more than its ceiling fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import RunSuite

CASES = (
    "--backends=eager,onnxruntime",
    "--precisions=fp32,int8-static",
    "--device=cpu",
    "--input-sizes=16",
    "-m",
    "memory",
)
CEILINGS = Path("baselines/memory/tiny_cnn.json")


def _ceilings(root: Path) -> dict[str, dict[str, dict[str, int]]]:
    cases: dict[str, dict[str, dict[str, int]]] = json.loads((root / CEILINGS).read_text())["cases"]
    return cases


def test_a_case_without_a_ceiling_is_measured_and_reported(run_suite: RunSuite) -> None:
    result = run_suite(*CASES)
    # eager fp32, ORT fp32 and ORT int8-static, each an inference and a session figure.
    result.assert_outcomes(passed=6, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*medgate: peak memory (memray, all threads)*",
            "*tiny_cnn-onnxruntime-int8-static-16-bs16-cpu*inference*no baseline*",
            "*tiny_cnn: cases without a memory ceiling*were measured, not gated*",
        ]
    )


def test_recorded_ceilings_hold_three_unchanged_reruns(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    recorded = run_suite(*CASES, "--update-baselines")
    recorded.assert_outcomes(passed=6, skipped=2)
    recorded.stdout.fnmatch_lines(["*medgate: wrote *memory*tiny_cnn.json*"])
    payload = json.loads((pytester.path / CEILINGS).read_text())
    assert payload["schema"] == 1
    assert payload["headroom"] == pytest.approx(0.10)
    assert payload["depends_on"]["threads"] >= 1
    inference = payload["cases"]["onnxruntime-int8-static-16-bs16-cpu"]["inference"]
    # Ceilings are whole bytes, rounded: 169184 B x 1.1 = 186102.4 is stored as 186102.
    assert inference["ceiling_bytes"] >= round(inference["measured_bytes"] * 1.10)
    for _ in range(3):
        rerun = run_suite(*CASES)
        rerun.assert_outcomes(passed=6, skipped=2)
        rerun.stdout.no_fnmatch_line("*no baseline*")


def test_a_case_that_allocates_ten_percent_more_fails_its_ceiling(
    pytester: pytest.Pytester, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = ("--backends=eager", "--precisions=fp32", "--device=cpu", "--input-sizes=16")
    run_suite(*eager, "-m", "memory", "--update-baselines").assert_outcomes(passed=2, skipped=0)
    measured = _ceilings(pytester.path)["eager-fp32-16-bs16-cpu"]["inference"]["measured_bytes"]
    monkeypatch.setenv("MEDGATE_TINY_BALLAST", str(measured // 10))
    result = run_suite(*eager, "-m", "memory")
    # The session figure builds the model but never runs it: the ballast is not there.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_inference_memory*tiny_cnn-eager-fp32-16-bs16-cpu*", "*Test was limited to*"]
    )


def test_a_build_that_copies_three_mib_more_fails_its_session_ceiling(
    pytester: pytest.Pytester, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager = ("--backends=eager", "--precisions=fp32", "--device=cpu", "--input-sizes=16")
    run_suite(*eager, "-m", "memory", "--update-baselines").assert_outcomes(passed=2, skipped=0)
    ceiling = _ceilings(pytester.path)["eager-fp32-16-bs1-cpu"]["session"]
    over = ceiling["ceiling_bytes"] - ceiling["measured_bytes"]
    monkeypatch.setenv("MEDGATE_TINY_BUILD_BALLAST", str(over + 2**20))
    result = run_suite(*eager, "-m", "memory")
    # The buffer is resident before the batch is traced: the inference figure does not see it.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_session_memory*tiny_cnn-eager-fp32-16-bs1-cpu*", "*Test was limited to*"]
    )


def _session_peaks(pytester: pytest.Pytester, run_suite: RunSuite, *args: str) -> dict[str, float]:
    report = pytester.path / "history-report"
    run_suite(*args, f"--medgate-report={report}")
    measurements = json.loads((report / "results.json").read_text())["measurements"]
    return {m["case"]: m["now"] for m in measurements if m["metric"] == "session peak"}


def test_a_session_figure_does_not_depend_on_what_ran_before_it(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    """A/A across process histories: each build measured first in its process, and after the
    timed and evaluated tests of the same cases have used every library it uses. Within an
    eighth of a session ceiling's minimum room; a first use counted reads megabytes apart."""
    cases = ("--backends=eager,torchscript,onnxruntime", "--precisions=fp32,fp16,int8-dynamic")
    cases += ("--device=cpu", "--input-sizes=16")
    alone = _session_peaks(pytester, run_suite, *cases, "-k", "test_session_memory")
    after = _session_peaks(
        pytester, run_suite, *cases, "-k", "test_session_memory or test_latency or test_accuracy"
    )
    assert alone.keys() == after.keys()
    assert len(alone) >= 5
    for case, mib in alone.items():
        assert after[case] == pytest.approx(mib, abs=0.25), case


def test_a_figure_traced_without_pythons_allocators_fails_its_test(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    """A run whose pytest-memray ends up not tracing Python's allocators (here a conftest turns
    the option off after medgate set it) fails each traced test with the fix, rather than
    holding an arena-counted figure to a ceiling or leaving it out."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_configure(config):
            config.option.trace_python_allocators = False
        """
    )
    eager = ("--backends=eager", "--precisions=fp32", "--device=cpu", "--input-sizes=16")
    result = run_suite(*eager, "-m", "memory")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*test_session_memory*without Python's allocators*pass --trace-python-allocators*"]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema": 2}', "*tiny_cnn.json: field schema: is 2, this medgate reads schema 1*"),
        (
            '{"schema": 1, "model": "tiny_cnn", "headroom": 0.1, "cases": '
            '{"eager-fp32-16-bs16-cpu": {"inference": {"measured_bytes": 10, '
            '"ceiling_bytes": "lots"}}}}',
            "*tiny_cnn.json: field cases.eager-fp32-16-bs16-cpu.inference.ceiling_bytes: "
            "expected a positive whole number of bytes, found 'lots'*",
        ),
    ],
)
def test_a_malformed_ceiling_file_is_one_error_naming_file_and_field(
    pytester: pytest.Pytester, run_suite: RunSuite, content: str, message: str
) -> None:
    path = pytester.path / CEILINGS
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result = run_suite(*CASES)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
