"""The plugin end to end, in subprocesses over the tiny zoo and medgate's real perf_tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import AVX2_ONLY_CPU, RunSuite
from medgate import list_backends
from medgate.core.precision import PRECISIONS
from medgate.report import render

BROKEN_BACKEND = """
import torch
from medgate.backends.eager import EagerBackend, EagerSession
from medgate.core.registry import register_backend


class NoisySession(EagerSession):
    def run(self, placed):
        return super().run(placed) + 0.5 * torch.randn(placed.shape[0], 2)


@register_backend
class BrokenBackend(EagerBackend):
    name = "broken"

    def prepare(self, model, example, context):
        return NoisySession(model.eval(), context.case.device)
"""


def test_smoke_run_trains_then_times_every_supported_case(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makeconftest(AVX2_ONLY_CPU)
    # Stages have their own test below: their torch.compile builds would double the compiles.
    result = run_suite("-m", "smoke and not stages", "--device=all", "-rs", "-v")
    # backends x precisions x 2 devices x 6 tests: every combination is collected, and each
    # one either runs or skips with its reason. On an AVX2-only CPU without a GPU (faked, so
    # this holds on any machine) the built-in backends run these 11 in every test: eager and
    # torchscript fp32/int8-dynamic, compile fp32/int8-dynamic/int8-static, onnxruntime
    # fp32/fp16/int8-dynamic/int8-static; the eager fp32 agreement case is the reference itself,
    # and compile's three have no session memory figure.
    outcomes = result.parseoutcomes()
    collected = len(list_backends()) * len(PRECISIONS) * 2 * 6
    assert outcomes["passed"] + outcomes["skipped"] == collected
    assert outcomes["passed"] >= 11 * 6 - 1 - 3
    runs = ["eager-fp32", "eager-int8-dynamic", "torchscript-fp32", "torchscript-int8-dynamic"]
    runs += ["compile-fp32", "compile-int8-dynamic", "compile-int8-static", "onnxruntime-fp32"]
    runs += ["onnxruntime-fp16", "onnxruntime-int8-dynamic", "onnxruntime-int8-static"]
    for test in ("test_latency", "test_throughput", "test_accuracy_holds", "test_agrees_with"):
        for combo in runs:
            if (test, combo) != ("test_agrees_with", "eager-fp32"):
                result.stdout.fnmatch_lines([f"*{test}*[[]tiny_cnn-{combo}-16-bs*-cpu[]] PASSED*"])
    result.stdout.fnmatch_lines_random(
        [
            "*test_latency*tiny_cnn-onnxruntime-int8-static-16-bs1-cpu*PASSED*",
            "*test_latency*tiny_cnn-compile-int8-static-16-bs1-cpu*PASSED*",
            "*test_throughput*tiny_cnn-torchscript-int8-dynamic-16-bs16-cpu*PASSED*",
            "*test_agrees_with_eager_fp32*tiny_cnn-onnxruntime-fp16-16-bs64-cpu*PASSED*",
            "*test_agrees_with_eager_fp32*tiny_cnn-compile-fp32-16-bs64-cpu*PASSED*",
        ]
    )
    expected_skips = [
        "SKIPPED*CUDA is not available on this machine",
        "SKIPPED*eager/fp16/cpu: fp16 needs CUDA*",
        "SKIPPED*onnxruntime/bf16/cpu: onnxruntime has no bf16 Conv kernels*",
        "SKIPPED*tensorrt does not run on cpu",
        "SKIPPED*eager fp32 on cpu is the reference itself",
        "SKIPPED*a compiled session's build peak is the state of dynamo's and inductor's caches*",
        "SKIPPED*bf16 on this CPU: Fake AVX2-only CPU*no native bf16 instructions*",
    ]
    result.stdout.fnmatch_lines_random(expected_skips)
    result.stdout.fnmatch_lines(
        [
            "*medgate: agreement with eager fp32*",
            "*medgate: accuracy on the test split*",
            "*tiny_cnn: 11 case(s) have no accuracy baseline*--update-baselines*",
            "*medgate: peak memory (memray, all threads)*",
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
    result.stderr.fnmatch_lines(["*--dataset tiny_cnn=*missing.npz: does not exist*"])


def test_a_backend_that_disagrees_with_eager_fails_agreement(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makeconftest(BROKEN_BACKEND)
    result = run_suite("--backends=broken", "--precisions=fp32", "--device=cpu", "-k", "agrees")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*tiny_cnn-broken-fp32-*disagrees with eager fp32*"])


def test_agreement_judged_on_the_accuracy_evaluation_s_logits_still_fails_a_broken_backend(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makeconftest(BROKEN_BACKEND)
    result = run_suite(
        "--backends=broken", "--precisions=fp32", "--device=cpu", "-k", "agrees or accuracy"
    )
    result.stdout.fnmatch_lines(
        [
            "*2 agreement case(s) judged on the logits their accuracy evaluation computed*",
            "FAILED test_agreement.py::test_agrees_with_eager_fp32[tiny_cnn-broken-fp32-*",
            "FAILED test_agreement.py::test_agrees_with_eager_fp32[tiny_cnn-broken-fp32-*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*tiny_cnn-broken-fp32-*disagrees with eager fp32*"])


def test_machine_info_records_versions_threads_and_the_hook(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    pytester.makeconftest(
        "def pytest_medgate_machine_info(config, info):\n    info['runner'] = 'pytester'\n"
    )
    result = run_suite(
        "-m",
        "smoke and latency and not stages",
        "--backends=eager",
        "--precisions=fp32",
        "--threads=1",
        "--benchmark-json=out.json",
    )
    result.assert_outcomes(passed=2, skipped=2)
    saved = json.loads((pytester.path / "out.json").read_text())
    info = saved["machine_info"]["medgate"]
    assert info["threads"] == 1
    assert info["runner"] == "pytester"
    assert info["fingerprint"]["threads"] == 1
    assert info["fingerprint_id"].endswith(tuple("0123456789abcdef"))
    assert {"torch", "torchvision", "onnxruntime"} <= set(info["versions"])
    extra = saved["benchmarks"][0]["extra_info"]
    assert extra["flops_per_sample"] > 0
    assert extra["params"] > 0
    assert extra["backend"] == "eager"
    assert extra["prepare_s"] >= 0
    assert extra["first_call_s"] > 0
    # The medgate verdict of each case rides along: no baseline yet in this project.
    assert extra["verdict"] == "no baseline"
    assert extra["rounds"] == saved["benchmarks"][0]["stats"]["rounds"]
    table = render(pytester.path / "out.json").splitlines()
    assert table[0].split("|")[1].strip() == "model"
    assert [line.split("|")[5].strip() for line in table[2:]] == ["eager", "eager"]


def test_pytest_benchmark_compare_still_fails_a_slower_case(
    pytester: pytest.Pytester, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """medgate times through ``benchmark.pedantic``: pytest-benchmark's own storage and
    ``--benchmark-compare-fail`` keep working beside medgate's gate (tests/test_latency_gate.py)."""
    args = (
        "-m",
        "latency and cpu and not stages",
        "--backends=eager,onnxruntime",
        "--precisions=fp32",
        "--input-sizes=32",
        # Enough rounds that a median of microseconds survives a busy 2-core machine.
        "--benchmark-min-rounds=25",
    )
    saved = run_suite(*args, "--benchmark-save=base")
    saved.assert_outcomes(passed=4)

    monkeypatch.setenv("MEDGATE_TINY_WORK", "60")
    slower = run_suite(*args, "--benchmark-compare", "--benchmark-compare-fail=median:400%")
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


CALIBRATED_ON_ZEROS = """
import torch
from medgate.workspace import Workspace

calibrate_as_shipped = Workspace._calibration_batches


def blank_images(self, model, size):
    # The classic loader bug: every calibration image is blank.
    return tuple(torch.zeros_like(batch) for batch in calibrate_as_shipped(self, model, size))


Workspace._calibration_batches = blank_images
"""


def test_static_int8_calibrated_on_blank_images_fails_agreement(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    args = ("--backends=onnxruntime", "--precisions=int8-static", "--device=cpu", "-k", "agrees")
    calibrated = run_suite(*args)
    calibrated.assert_outcomes(passed=2)
    pytester.makeconftest(CALIBRATED_ON_ZEROS)
    broken = run_suite(*args)
    broken.assert_outcomes(failed=2)
    broken.stdout.fnmatch_lines(
        ["*tiny_cnn-onnxruntime-int8-static-*disagrees with eager fp32*int8-static*"]
    )


KNOWN_DISAGREEMENTS = """
import dataclasses

import tiny_zoo
from medgate import KnownDisagreement, register_model

{broken}

register_model(
    dataclasses.replace(
        tiny_zoo.SPEC,
        name="tiny_known",
        weights_from="tiny_cnn",
        known_disagreements=(KnownDisagreement("{pattern}", "reviewed: noisy on purpose"),),
    )
)(tiny_zoo.tiny_cnn)
"""


@pytest.mark.parametrize(
    ("pattern", "outcome"),
    [
        ("broken-fp32-*", {"xfailed": 1}),  # declared and still disagreeing: measured, allowed
        ("onnxruntime-fp32-*", {"failed": 1}),  # declared but agreeing: strict XPASS fails
    ],
)
def test_a_known_disagreement_is_a_strict_xfail(
    pytester: pytest.Pytester, run_suite: RunSuite, pattern: str, outcome: dict[str, int]
) -> None:
    pytester.makeconftest(KNOWN_DISAGREEMENTS.format(broken=BROKEN_BACKEND, pattern=pattern))
    backend = pattern.split("-")[0]
    result = run_suite(
        "--models=tiny_known",
        f"--backends={backend}",
        "--precisions=fp32",
        "--device=cpu",
        "--input-sizes=16",
        "-k",
        "agrees",
        "-rxX",
    )
    result.assert_outcomes(**outcome)
    if "xfailed" in outcome:
        result.stdout.fnmatch_lines(["*XFAIL*known: reviewed: noisy on purpose*"])
    else:
        result.stdout.fnmatch_lines(["*XPASS(strict)*known: reviewed: noisy on purpose*"])


def test_every_backend_and_precision_times_its_stages(run_suite: RunSuite) -> None:
    """Each stage is built on its own by the case's backend: static int8 calibrates the head on
    the feature extractor's outputs, and each build gets its own artifacts."""
    result = run_suite(
        "-m",
        "stages and cpu",
        "--backends=eager,torchscript,onnxruntime,compile",
        "--precisions=fp32,int8-*",
        "--input-sizes=16",
        "-v",
    )
    # eager fp32/int8-dynamic, torchscript fp32/int8-dynamic, onnxruntime fp32/int8-dynamic/
    # int8-static, compile fp32/int8-dynamic/int8-static.
    result.assert_outcomes(passed=10, skipped=2)
    result.stdout.fnmatch_lines_random(
        [
            "*tiny_cnn-onnxruntime-int8-static-16-bs1-cpu:preprocess*preprocess*no baseline*",
            "*tiny_cnn-compile-int8-static-16-bs1-cpu:features*features*no baseline*",
            "*tiny_cnn-torchscript-int8-dynamic-16-bs1-cpu:head*head*no baseline*",
        ]
    )
