"""A cold cache: checkpoints train one at a time, the cheapest recipe first, each just before its
model's first case, so verdicts come while the rest still train; a failed training errors only
its own model's cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import RunSuite

#: Two more models on the tiny data: one whose recipe costs more than tiny_cnn's (more epochs),
#: one that cannot train (its forward raises in training mode).
MORE_MODELS = """
from dataclasses import replace

import torch
from torch import nn

from medgate import TrainRecipe, register_model
from tiny_zoo import SPEC, tiny_cnn


@register_model(replace(SPEC, name="tiny_slow", train=replace(SPEC.train, epochs=6)))
def tiny_slow() -> nn.Module:
    return tiny_cnn()


class Untrainable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("this model refuses to train")
        return self.inner(x)


@register_model(replace(SPEC, name="tiny_untrainable"))
def tiny_untrainable() -> nn.Module:
    return Untrainable()
"""

#: Records when each test's call phase ended, to compare with when each checkpoint was written.
CALL_TIMES = """
import json
import time
from pathlib import Path


def pytest_runtest_logreport(report):
    if report.when == "call" or report.when == "setup" and report.outcome != "passed":
        with Path("call_times.jsonl").open("a") as log:
            log.write(json.dumps([report.nodeid, report.outcome, time.time()]) + "\\n")
"""


def _with_more_models(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(more_models=MORE_MODELS)
    pytester.makeconftest(CALL_TIMES)
    pytester.makeini(
        "[pytest]\n"
        "pythonpath = .\n"
        "medgate_zoo =\n    tiny_zoo\n    more_models\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
    )


def _written(cache: Path, model: str) -> float:
    (checkpoint,) = (cache / "checkpoints").glob(f"{model}-*.pt")
    return checkpoint.stat().st_mtime


def test_a_cold_run_gives_verdicts_while_the_costlier_checkpoints_still_train(
    pytester: pytest.Pytester, run_suite: RunSuite, tmp_path: Path
) -> None:
    _with_more_models(pytester)
    cache = tmp_path / "cold-cache"
    result = run_suite(
        f"--cache-dir={cache}",
        "--models=tiny_slow,tiny_cnn",
        "--backends=eager",
        "--precisions=fp32",
        "-m",
        "smoke and accuracy and cpu",
        "-v",
    )
    result.assert_outcomes(passed=2)
    result.stderr.fnmatch_lines(
        ["*2 checkpoint(s) not in the cache (tiny_cnn, tiny_slow): each trains before its*"]
    )
    log = (pytester.path / "call_times.jsonl").read_text()
    calls = [json.loads(line) for line in log.splitlines()]
    first_verdict = min(when for nodeid, _, when in calls if "tiny_cnn" in nodeid)
    assert first_verdict < _written(cache, "tiny_slow"), "tiny_cnn waited for tiny_slow's training"
    assert "tiny_cnn" in calls[0][0], "the cheaper checkpoint did not train first"


def test_a_checkpoint_that_fails_to_train_errors_only_its_models_cases(
    pytester: pytest.Pytester, run_suite: RunSuite, tmp_path: Path
) -> None:
    _with_more_models(pytester)
    result = run_suite(
        f"--cache-dir={tmp_path / 'cold-cache'}",
        "--models=tiny_untrainable,tiny_cnn",
        "--backends=eager,onnxruntime",
        "--precisions=fp32",
        "-m",
        "smoke and accuracy and cpu",
    )
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of*tiny_untrainable*",
            "medgate: model tiny_untrainable: training worker*exited with 1:",
            "*RuntimeError: this model refuses to train",
        ]
    )
