"""Bad input as a user gives it: each is one clear error naming the file or option and the fix,
never a traceback, never a run that silently gates something else."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import RunSuite
from medgate.cli import main
from medgate.core.files import BaselineError, load_json
from medgate.core.options import percentage
from medgate.gates.latency.store import read_latency_baseline
from medgate.training import CheckpointError, read_checkpoint


@pytest.mark.parametrize("value", ["nan", "NaN%", "inf", "-inf", "-5", "ten"])
def test_a_percentage_must_be_finite_and_not_negative(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="finite percentage"):
        percentage(value)


@pytest.mark.parametrize("content", ["null", "[]", "3", '"text"'])
def test_a_baseline_file_that_is_not_an_object_is_an_error_not_no_baseline(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=r"m\.json: \(top level\): expected an object"):
        load_json(path, "latency")


@pytest.mark.parametrize("rounds", ["nan nan nan", "1.0 inf", "12.5 -3.0"])
def test_latency_rounds_must_be_finite_and_positive(tmp_path: Path, rounds: str) -> None:
    from medgate.gates.latency.reference_workload import VERSION

    path = tmp_path / "m.json"
    payload = {
        "schema": 1,
        "model": "m",
        "fingerprint": {},
        "reference_workload": VERSION,
        "measurements": {"case": {"reference_us": "10 11", "series_us": {"model": rounds}}},
    }
    path.write_text(json.dumps(payload))
    with pytest.raises(BaselineError, match=r"measurements\.case\.series_us\.model: .*finite"):
        read_latency_baseline(path)


class _RunsAShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_never_advised_to_retry(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _RunsAShell(marker)}, path)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path)
    said = str(refused.value)
    assert "evil.pt" in said
    assert "GLOBAL posix.system" in said
    assert "will likely succeed" not in said
    assert "Do not load it with weights_only=False" in said
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--checkpoint=alzheimer=ck.pt"],
            "*--checkpoint names model 'alzheimer', which this run does not select*tiny_cnn*",
        ),
        (
            ["--dataset=tiny=data.npz"],
            "*--dataset names model 'tiny', which this run does not select*tiny_cnn*",
        ),
        (
            ["--checkpoint=tiny_cnn=/nonexistent/ck.pt"],
            "*--checkpoint tiny_cnn=/nonexistent/ck.pt: does not exist*",
        ),
        (["--checkpoint=tiny_cnn=."], "*--checkpoint tiny_cnn=*: is a directory*"),
        (["--dataset=tiny_cnn=/nonexistent.npz"], "*--dataset tiny_cnn=/nonexistent.npz*"),
        (["--input-sizes=999"], "*input size 999 is not a size of any selected model*16*"),
        (["--latency-tolerance=nan"], "*'nan' is not a finite percentage*"),
        (["--memory-headroom=inf"], "*'inf' is not a finite percentage*"),
    ],
)
def test_a_bad_option_stops_the_run_before_anything_is_measured(
    run_suite: RunSuite, args: list[str], message: str
) -> None:
    result = run_suite(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_training_an_unknown_model_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--zoo=tiny_zoo", "train", "--models=nosuch"]) == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err


NAN_BACKEND = """
import torch
from medgate.backends.eager import EagerBackend, EagerSession
from medgate.core.registry import register_backend


class NanSession(EagerSession):
    def run(self, placed):
        out = super().run(placed).clone()
        out[0, 0] = float("nan")
        return out


@register_backend
class NanBackend(EagerBackend):
    name = "nan"

    def prepare(self, model, example, context):
        return NanSession(model.eval(), context.case.device)
"""


def test_nan_logits_fail_the_case_naming_it(pytester: pytest.Pytester, run_suite: RunSuite) -> None:
    pytester.makeconftest(NAN_BACKEND)
    result = run_suite(
        "--backends=nan",
        "--precisions=fp32",
        "--device=cpu",
        "--input-sizes=16",
        "-k",
        "agrees or accuracy",
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*tiny_cnn-nan-fp32-16-bs64-cpu: the model produced NaN or infinite logits for 1 of*",
            "*tiny_cnn-nan-fp32-16-bs64-cpu: the model produced NaN or infinite logits for *",
        ]
    )
