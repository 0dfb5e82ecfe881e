"""The accuracy gate end to end: each regression it exists for is injected and must fail it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import RunSuite
from medgate.training import checkpoint_sha256

#: The reference, ORT fp32 and ORT static int8 at one size; eager has no static int8 (a skip).
CASES = (
    "--backends=eager,onnxruntime",
    "--precisions=fp32,int8-static",
    "--device=cpu",
    "--input-sizes=16",
    "-k",
    "accuracy",
)
BASELINE = Path("baselines/accuracy/tiny_cnn.json")


def _record(run_suite: RunSuite, *extra: str) -> pytest.RunResult:
    result = run_suite(*CASES, "--update-baselines", *extra)
    result.assert_outcomes(passed=3, skipped=1)
    return result


def _sensitivity(path: Path, case: str = "eager-fp32-16-cpu") -> float:
    section = next(iter(json.loads(path.read_text())["datasets"].values()))
    value: float = section["cases"][case]["metrics"]["sensitivity"]
    return value


def test_update_baselines_records_a_reviewable_file_and_a_rerun_passes(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    recorded = _record(run_suite)
    recorded.stdout.fnmatch_lines(["*medgate: wrote *tiny_cnn.json; review the diff*"])
    payload = json.loads((pytester.path / BASELINE).read_text())
    assert payload["schema"] == 3
    assert payload["positive_class"] == "square"
    section = payload["datasets"]["tiny_squares"]
    checkpoint = section["cases"]["eager-fp32-16-cpu"]["checkpoint"]
    assert len(section["dataset"]["sha256"]) == len(checkpoint["tensors_sha256"]) == 64
    assert checkpoint["recipe_key"]
    assert {"medgate", "torch", "onnxruntime", "scikit-learn"} <= set(section["versions"])
    assert sorted(section["cases"]) == [
        "eager-fp32-16-cpu",
        "onnxruntime-fp32-16-cpu",
        "onnxruntime-int8-static-16-cpu",
    ]
    assert len(section["cases"]["eager-fp32-16-cpu"]["predictions"]) == 400
    assert (pytester.path / BASELINE).read_text() == json.dumps(
        payload, indent=2, sort_keys=True
    ) + "\n"

    for _ in range(2):
        rerun = run_suite(*CASES)
        rerun.assert_outcomes(passed=3, skipped=1)
        rerun.stdout.no_fnmatch_line("*no accuracy baseline*")
        rerun.stdout.no_fnmatch_line("*REGRESSED*")
    assert (pytester.path / BASELINE).read_text() == json.dumps(
        payload, indent=2, sort_keys=True
    ) + "\n"


def test_a_perturbed_checkpoint_that_loses_sensitivity_fails_against_the_baseline(
    pytester: pytest.Pytester, run_suite: RunSuite, medgate_cache: Path, tmp_path: Path
) -> None:
    _record(run_suite)
    recorded = json.loads((pytester.path / BASELINE).read_text())
    case = recorded["datasets"]["tiny_squares"]["cases"]["eager-fp32-16-cpu"]
    sha256 = case["checkpoint"]["tensors_sha256"]
    (checkpoint,) = [
        path
        for path in (medgate_cache / "checkpoints").glob("tiny_cnn-*.pt")
        if checkpoint_sha256(path) == sha256
    ]
    payload = torch.load(checkpoint, weights_only=True)
    # The positive logit's bias lowered: the classic "someone retrained with a different class
    # weighting" change. Every backend agrees with this model's fp32 reference; only the
    # baseline knows it used to find more squares.
    payload["state_dict"]["head.bias"][1] -= 0.5
    perturbed = tmp_path / "perturbed.pt"
    torch.save(payload, perturbed)

    measured = run_suite(
        *CASES,
        f"--checkpoint=tiny_cnn={perturbed}",
        "--update-baselines",
        f"--baseline-dir={tmp_path / 'perturbed-baselines'}",
    )
    measured.assert_outcomes(passed=3, skipped=1)
    drop = _sensitivity(pytester.path / BASELINE) - _sensitivity(
        tmp_path / "perturbed-baselines" / "accuracy" / "tiny_cnn.json"
    )
    assert drop >= 0.02

    gated = run_suite(*CASES, f"--checkpoint=tiny_cnn={perturbed}")
    gated.assert_outcomes(failed=3, skipped=1)
    gated.stdout.fnmatch_lines_random(
        [
            "*tiny_cnn-eager-fp32-16-bs64-cpu*vs baseline*sensitivity*REGRESSED*lost*",
            "*tiny_cnn-eager-fp32-16-bs64-cpu*STALE BASELINE*checkpoint tensors SHA-256*--update-*",
        ]
    )


BIASED_BACKEND = """
import torch
from medgate.backends.eager import EagerBackend, EagerSession
from medgate.core.registry import register_backend


class BiasedSession(EagerSession):
    def run(self, placed):
        return super().run(placed) - torch.tensor([0.0, {shift}])


@register_backend
class BiasedBackend(EagerBackend):
    name = "biased"

    def prepare(self, model, example, context):
        return BiasedSession(model.eval(), context.case.device)
"""


@pytest.mark.parametrize(("shift", "outcome"), [(1.0, "failed"), (0.0, "passed")])
def test_a_backend_that_loses_sensitivity_fails_against_fp32(
    pytester: pytest.Pytester, run_suite: RunSuite, shift: float, outcome: str
) -> None:
    pytester.makeconftest(BIASED_BACKEND.format(shift=shift))
    result = run_suite(
        "--backends=biased",
        "--precisions=fp32",
        "--device=cpu",
        "--input-sizes=16",
        "-k",
        "accuracy",
    )
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            ["*tiny_cnn-biased-fp32-16*vs fp32 reference*sensitivity*REGRESSED*lost, 0 gained*"]
        )


CALIBRATED_ON_NOISE = """
import torch
from medgate.workspace import Workspace


def faint_noise(self, model, size):
    generator = torch.Generator().manual_seed(0)
    return (0.01 * torch.rand(16, 1, size, size, generator=generator),)


Workspace._calibration_batches = faint_noise
"""


def test_static_int8_calibrated_on_noise_fails_accuracy(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    args = ("--backends=onnxruntime", "--precisions=int8-static", "--device=cpu", "-k", "accuracy")
    run_suite(*args).assert_outcomes(passed=2)
    pytester.makeconftest(CALIBRATED_ON_NOISE)
    broken = run_suite(*args)
    broken.assert_outcomes(failed=2)
    broken.stdout.fnmatch_lines(
        ["*tiny_cnn-onnxruntime-int8-static-*vs fp32 reference*accuracy*REGRESSED*"]
    )


FLOORED_MODEL = """
import dataclasses

import torch

import tiny_zoo
from medgate import register_model
from medgate.core.policy import AccuracyPolicy, Floor

SHIFT = torch.tensor([{shift}, 0.0])


@register_model(
    dataclasses.replace(
        tiny_zoo.SPEC,
        name="tiny_floored",
        weights_from="tiny_cnn",
        accuracy=AccuracyPolicy(
            floors=(Floor("sensitivity", 0.9, dataset="tiny_*", cases="*-16", reason="spec"),)
        ),
    )
)
def tiny_floored():
    # An operating point gone wrong: the negative class's logit raised in the model itself, so
    # the fp32 reference is as bad as every other case.
    model = tiny_zoo.tiny_cnn()
    model.register_forward_hook(lambda module, inputs, logits: logits + SHIFT)
    return model
"""


@pytest.mark.parametrize(("shift", "outcome"), [(50.0, "failed"), (0.0, "passed")])
def test_a_case_below_its_models_floor_fails_whatever_the_reference(
    pytester: pytest.Pytester, run_suite: RunSuite, shift: float, outcome: str
) -> None:
    pytester.makeconftest(FLOORED_MODEL.format(shift=shift))
    result = run_suite(
        "--models=tiny_floored",
        "--backends=eager",
        "--precisions=fp32",
        "--device=cpu",
        "-k",
        "accuracy",
    )
    # The floor names size 16 only; 32 is judged against the reference and baseline alone.
    if outcome == "passed":
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*tiny_floored-eager-fp32-16*floor*sensitivity*BEYOND LIMIT*"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "*tiny_cnn.json: not readable JSON*"),
        (
            '{"schema": 0, "model": "tiny_cnn"}',
            "*tiny_cnn.json: field schema: is 0, this medgate reads schema 2 or 3*",
        ),
        (
            '{"schema": 2, "model": "tiny_cnn", "positive_class": "square", "datasets": '
            '{"tiny_squares": {"dataset": {"name": "t", "source": "s", "sha256": "x"}, '
            '"checkpoint": {"tensors_sha256": "y", "recipe_key": null}, "versions": {}, "cases": '
            '{"eager-fp32-16-cpu": {"predictions": "0101", "metrics": {"accuracy": "high"}}}}}}',
            "*tiny_cnn.json: field datasets.tiny_squares.cases.eager-fp32-16-cpu.metrics.accuracy:"
            " expected a number, found 'high'*",
        ),
    ],
)
def test_a_malformed_baseline_is_one_error_naming_file_and_field(
    pytester: pytest.Pytester, run_suite: RunSuite, content: str, message: str
) -> None:
    path = pytester.path / BASELINE
    path.parent.mkdir(parents=True)
    path.write_text(content)
    result = run_suite(*CASES)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_update_baselines_replaces_a_file_of_an_older_schema(
    pytester: pytest.Pytester, run_suite: RunSuite
) -> None:
    """The re-record that the old-schema error asks for must not stop on that same error."""
    path = pytester.path / BASELINE
    path.parent.mkdir(parents=True)
    path.write_text('{"schema": 1, "model": "tiny_cnn", "datasets": {}}')
    _record(run_suite)
    assert json.loads(path.read_text())["schema"] == 3
