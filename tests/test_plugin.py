"""The plugin end to end, in subprocesses over the tiny zoo and medgate's real perf_tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import RunSuite
from medgate.report import render

BROKEN_BACKEND = """
import torch
from medgate.backends.eager import EagerBackend, EagerSession
from medgate.registry import register_backend


class NoisySession(EagerSession):
    def run(self, placed):
        return super().run(placed) + 0.5 * torch.randn(placed.shape[0], 2)


@register_backend
class BrokenBackend(EagerBackend):
    name = "broken"

    def prepare(self, model, example, context):
        return NoisySession(model.eval(), context.case.device)
"""


def test_smoke_run_trains_then_times_every_supported_case(run_suite: RunSuite) -> None:
    result = run_suite("-m", "smoke", "-rs", "-v")
    result.assert_outcomes(passed=3 + 3 + 2, skipped=3 + 3 + 3 + 1)
    result.stdout.fnmatch_lines_random(
        [
            "*test_latency*tiny_cnn-onnxruntime-fp32-16-bs1-cpu*PASSED*",
            "*test_throughput*tiny_cnn-torchscript-fp32-16-bs16-cpu*PASSED*",
            "*test_agrees_with_eager_fp32*tiny_cnn-onnxruntime-fp32-16-bs64-cpu*PASSED*",
        ]
    )
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED*CUDA is not available on this machine",
            "SKIPPED*CPU execution provider only",
            "SKIPPED*eager fp32 on cpu is the reference itself",
        ]
    )


def test_the_medgate_marker_rejects_unknown_keywords(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.medgate(batch="latency", rounds=3)
        def test_x(medgate_case):
            pass
        """
    )
    result = run_suite("test_bad.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_x: @pytest.mark.medgate takes only batch*rounds*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--input-sizes=big", "*input size 'big': give pixel sizes or all/largest/smallest*"),
        ("--device=tpu", "*device 'tpu': choose one of cpu, cuda or all*"),
        ("--dataset=tiny_cnn", "*'tiny_cnn': write MODEL=PATH*"),
        ("--threads=-2", "*'-2' is not a positive whole number*"),
    ],
)
def test_a_bad_option_is_a_usage_error_before_anything_runs(
    run_suite: RunSuite, option: str, message: str
) -> None:
    result = run_suite(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_ini_value_names_the_key(pytester: pytest.Pytester, run_suite: RunSuite) -> None:
    ini = pytester.path / "tox.ini"  # where pytester.makeini writes
    ini.write_text(ini.read_text().rstrip("\n") + "\nmedgate_throughput_batch = lots\n")
    result = run_suite()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini key medgate_throughput_batch = 'lots'*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--models=tiny_cn", "*unknown model 'tiny_cn'; did you mean tiny_cnn*"),
        ("--models=brain*", "*model pattern 'brain*' matches nothing registered*"),
        ("--backends=onnx", "*unknown backend 'onnx'; did you mean onnxruntime*"),
        ("--precisions=fp8", "*unknown precision 'fp8'*"),
    ],
)
def test_a_selection_that_matches_nothing_is_a_usage_error(
    run_suite: RunSuite, option: str, message: str
) -> None:
    result = run_suite(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_dataset_stops_the_run_naming_the_file(run_suite: RunSuite, tmp_path: Path) -> None:
    result = run_suite(f"--dataset=tiny_cnn={tmp_path / 'missing.npz'}", "-m", "smoke")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*model tiny_cnn: *missing.npz: no such file or directory*"])


def test_a_backend_that_disagrees_with_eager_fails_agreement(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makeconftest(BROKEN_BACKEND)
    result = run_suite("--backends=broken", "--device=cpu", "-k", "agrees")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*tiny_cnn-broken-fp32-*disagrees with eager fp32*"])


def test_machine_info_records_versions_threads_and_the_hook(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makeconftest(
        "def pytest_medgate_machine_info(config, info):\n    info['runner'] = 'pytester'\n"
    )
    result = run_suite(
        "-m", "smoke and latency", "--backends=eager", "--threads=1", "--benchmark-json=out.json"
    )
    result.assert_outcomes(passed=2, skipped=2)
    saved = json.loads((pytester.path / "out.json").read_text())
    info = saved["machine_info"]["medgate"]
    assert info["threads"] == 1
    assert info["runner"] == "pytester"
    assert {"torch", "torchvision", "onnxruntime"} <= set(info["versions"])
    extra = saved["benchmarks"][0]["extra_info"]
    assert extra["flops_per_sample"] > 0
    assert extra["params"] > 0
    assert extra["backend"] == "eager"
    table = render(pytester.path / "out.json").splitlines()
    assert table[0].split("|")[1].strip() == "model"
    assert [line.split("|")[5].strip() for line in table[2:]] == ["eager", "eager"]


def test_compare_fails_when_a_case_gets_slower(
    pytester: pytest.Pytester, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("-m", "latency and cpu", "--backends=eager,onnxruntime", "--input-sizes=32")
    saved = run_suite(*args, "--benchmark-save=base")
    saved.assert_outcomes(passed=4)

    same = run_suite(*args, "--benchmark-compare", "--benchmark-compare-fail=median:200%")
    same.assert_outcomes(passed=4)
    assert same.ret == pytest.ExitCode.OK

    monkeypatch.setenv("MEDGATE_TINY_WORK", "60")
    slower = run_suite(*args, "--benchmark-compare", "--benchmark-compare-fail=median:200%")
    assert slower.ret != pytest.ExitCode.OK
    # pytest-benchmark reports regressions on stderr; every slowed case must be named.
    pytest.LineMatcher(slower.errlines).fnmatch_lines_random(
        [
            "*Performance has regressed:*",
            "*test_latency*tiny_cnn-eager-fp32-32-bs1-cpu*median*",
            "*test_latency*tiny_cnn-onnxruntime-fp32-32-bs1-cpu*median*",
            "*test_throughput*tiny_cnn-eager-fp32-32-bs16-cpu*median*",
            "*test_throughput*tiny_cnn-onnxruntime-fp32-32-bs16-cpu*median*",
        ]
    )
