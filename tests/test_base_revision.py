"""The base revision as the baseline, end to end: a git project with a two-model zoo, its base
commit and a head that changes one thing, run with ``--medgate-base`` through real worker
processes (real backends on tiny models, and the fake backend for controlled noise)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import AVX2_ONLY_CPU, HERE, ROOT
from medgate.base.revision import BaseRevisionError, materialize
from medgate.results.schema import load as load_results

PARTS = '''
import torch
from torch import nn

from medgate import ModelSpec, StagedClassifier, TrainRecipe
from tiny_data import RECIPE


def spec(name):
    return ModelSpec(
        name=name,
        task="bright square or not",
        classes=RECIPE.classes,
        positive_class="square",
        input_sizes=(16,),
        in_chans=1,
        mean=(0.3,),
        std=(0.3,),
        dataset=RECIPE,
        train=TrainRecipe(train_size=16, epochs=3, batch_size=16, lr=1e-2),
    )


class Repeated(nn.Module):
    def __init__(self, repeats):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.repeats = repeats

    def forward(self, x):
        for _ in range(self.repeats):
            x = torch.relu(self.conv(x)) * 0.5 + x * 0.5
        return x


class Tiny(StagedClassifier):
    """``bias`` is added to the positive logit; ``ballast`` floats are held through forward."""

    def __init__(self, repeats, bias, ballast):
        features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), Repeated(repeats), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        super().__init__(features, nn.Linear(8, 2))
        self.bias = bias
        self.ballast = ballast

    def forward(self, x):
        held = torch.ones(self.ballast) if self.ballast else None
        logits = super().forward(x)
        del held
        return logits + torch.tensor([0.0, self.bias])
'''

MODEL = """
from medgate import register_model
from zoo.parts import Tiny, spec

WORK = {work}
BIAS = {bias}
BALLAST = {ballast}
COST = {cost}


@register_model(spec("{name}"))
def build():
    model = Tiny(WORK, BIAS, BALLAST)
    model.fake_cost = COST
    return model
"""

#: What each model file holds on the base commit.
BASE = {"work": 1, "bias": 0.0, "ballast": 0, "cost": 1.0}

Git = Callable[..., str]


def _model(name: str, **changes: object) -> str:
    return MODEL.format(name=name, **{**BASE, **changes})


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A git repository: a zoo package of three models (tiny_a, tiny_b, tiny_c), medgate's perf
    tests, the fake backend; one commit, the base."""
    root = pytester.path
    pytester.makeini(
        "[pytest]\n"
        "pythonpath = .\n"
        "medgate_zoo =\n    zoo\n    fake_backend\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
    )
    pytester.makeconftest(AVX2_ONLY_CPU)
    zoo = root / "zoo"
    zoo.mkdir()
    (zoo / "__init__.py").write_text("from zoo import tiny_a, tiny_b, tiny_c  # noqa: F401\n")
    (zoo / "parts.py").write_text(PARTS)
    (zoo / "tiny_a.py").write_text(_model("tiny_a"))
    (zoo / "tiny_b.py").write_text(_model("tiny_b"))
    (zoo / "tiny_c.py").write_text(_model("tiny_c"))
    for module in ("fake_backend.py", "tiny_data.py"):
        shutil.copy(HERE / module, root / module)
    for test_file in ("test_latency.py", "test_accuracy.py", "test_memory.py"):
        shutil.copy(ROOT / "perf_tests" / test_file, root / test_file)
    _git(root)("init", "-q")
    _commit(root, "base")
    return root


def _git(root: Path) -> Git:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    return run


def _commit(root: Path, message: str) -> str:
    git = _git(root)
    git("add", "-A")
    git("commit", "-q", "--allow-empty", "-m", message)
    return git("rev-parse", "HEAD").strip()


def _run(pytester: pytest.Pytester, medgate_cache: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        f"--cache-dir={medgate_cache}",
        "--medgate-base=HEAD~1",
        "--device=cpu",
        "--input-sizes=16",
        "--medgate-base-block-ms=100",
        # Written by the runs that check it (a later --medgate-report wins); the report's
        # plots cost seconds per run.
        "--medgate-report=off",
        "-p",
        "no:randomly",
        "-rs",
        *args,
    )


def _verdicts(result: pytest.RunResult) -> dict[str, str]:
    """The head-vs-base latency table: case id -> verdict."""
    found = {}
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "medgate: latency, head vs base" in line)
    for line in lines[start + 1 :]:
        if found and not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and re.match(r"tiny_[abc]-", cells[0]):
            found[cells[0]] = cells[-1].split(" (")[0]  # the verdict, not its confirmation
    return found


FAKE = ("--backends=fake_speed", "--precisions=fp32,int8-dynamic", "-m", "latency")
#: tiny_a's eager fp32 cases, with memray; and its inference memory case alone.
TINY_A_UNDER_MEMRAY = ("--backends=eager", "--precisions=fp32", "--models=tiny_a", "-p", "memray")
INFERENCE_MEMORY = (*TINY_A_UNDER_MEMRAY, "-m", "memory", "-k", "inference")


def test_a_and_a_on_unchanged_code_raises_no_false_alarm(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    _commit(project, "head: nothing changed")
    # Batch 1, as the pre-merge lane times it: 3 models x 4 precisions.
    every = (*FAKE[:1], "--precisions=fp32,fp16,int8-dynamic,int8-static", "-m", "latency")
    every += ("-k", "not stages and not throughput")
    skipped = _run(pytester, medgate_cache, *every)
    skipped.assert_outcomes(skipped=12)
    skipped.stdout.fnmatch_lines(["*identical to base: tiny_a's engine, model code*"])

    measured = _run(pytester, medgate_cache, *every, "--medgate-base-identical=measure")
    measured.assert_outcomes(passed=12)
    verdicts = _verdicts(measured)
    assert len(verdicts) == 12
    assert "REGRESSED" not in verdicts.values()

    # Accuracy and memory against an identical base pass too.
    others = _run(
        pytester,
        medgate_cache,
        *TINY_A_UNDER_MEMRAY,
        "-m",
        "accuracy or memory",
        "-k",
        "not session",
        "--medgate-base-identical=measure",
    )
    others.assert_outcomes(passed=2)
    others.stdout.fnmatch_lines(["*tiny_a-eager-fp32-16-bs16-cpu*same*"])


def test_a_slower_model_is_regressed_and_the_other_is_not_measured(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    (project / "zoo" / "tiny_a.py").write_text(_model("tiny_a", cost=1.12))
    _commit(project, "head: tiny_a 12 % slower")
    result = _run(
        pytester,
        medgate_cache,
        *FAKE,
        "-k",
        "not stages and not throughput",
        "--benchmark-autosave",
        "--medgate-report=report",
    )
    result.assert_outcomes(failed=2, skipped=4)
    # The report says the same: the base as reference, the regressions first, the rest
    # identical to base.
    document = load_results(project / "report" / "results.json")
    latency = [row for row in document["measurements"] if row["gate"] == "latency"]
    assert {row["case"] for row in latency} == {
        f"tiny_a-fake_speed-{p}-16-bs1-cpu" for p in ("fp32", "int8-dynamic")
    }
    assert {row["verdict"] for row in latency} == {"REGRESSED"}
    assert all(row["reference"]["kind"] == "base" for row in latency)
    assert all(row["delta"] > 1.05 for row in latency)
    identical = {row["case"] for row in document["measurements"] if row["gate"] == "base"}
    assert identical == {
        f"tiny_{m}-fake_speed-{p}-16-bs1-cpu" for m in "bc" for p in ("fp32", "int8-dynamic")
    }
    markdown = (project / "report" / "report.md").read_text()
    assert markdown.startswith("## medgate: FAIL — 2 failing verdict(s)")
    assert "the base revision" in markdown
    result.stdout.fnmatch_lines(["*tiny_a-fake_speed-fp32-16-bs1-cpu*slower than the base*"])
    verdicts = _verdicts(result)
    assert set(verdicts) == {case for case in verdicts if case.startswith("tiny_a-")}
    assert set(verdicts.values()) == {"REGRESSED"}
    # Each was confirmed in a fresh pair of worker processes before it failed its test.
    result.stdout.fnmatch_lines(["*slower than the base*confirmed in fresh processes*"])
    result.stdout.fnmatch_lines(["*identical to base: tiny_b's*"])
    # Both sides are pytest-benchmark runs of their own: its own tooling compares them.
    (base_run,) = project.glob(".benchmarks/*/0001_medgate-base.json")
    (head_run,) = project.glob(".benchmarks/*/0002_medgate-head.json")
    compare = subprocess.run(
        [Path(sys.executable).with_name("pytest-benchmark"), "compare", base_run, head_run],
        capture_output=True,
        text=True,
        check=True,
    )
    assert compare.stdout.count("test_latency[tiny_a-fake_speed-fp32-16-bs1-cpu]") == 2


def test_real_backends_see_a_model_doing_more_work(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    (project / "zoo" / "tiny_a.py").write_text(_model("tiny_a", work=4))
    _commit(project, "head: tiny_a repeats its middle convolution 4 times")
    result = _run(
        pytester,
        medgate_cache,
        "--backends=eager,onnxruntime",
        "--precisions=fp32",
        "--models=tiny_a",
        "-m",
        "latency",
        "-k",
        "not stages and not throughput",
    )
    result.assert_outcomes(failed=2)
    assert set(_verdicts(result).values()) == {"REGRESSED"}


def test_a_lower_positive_bias_regresses_sensitivity_against_the_base(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    (project / "zoo" / "tiny_a.py").write_text(_model("tiny_a", bias=-2.0))
    _commit(project, "head: tiny_a calls fewer squares")
    result = _run(
        pytester, medgate_cache, "--backends=eager", "--precisions=fp32", "-m", "accuracy"
    )
    result.assert_outcomes(failed=1, skipped=2)
    result.stdout.fnmatch_lines(["*tiny_a-eager-fp32-16-bs64-cpu*vs base sensitivity: REGRESSED*"])

    # Again: the base's evaluation is read back (same base identity, machine, threads), and
    # judges the same.
    again = _run(pytester, medgate_cache, "--backends=eager", "--precisions=fp32", "-m", "accuracy")
    again.assert_outcomes(failed=1, skipped=2)
    again.stdout.fnmatch_lines(["*tiny_a-eager-fp32-16-bs64-cpu*vs base sensitivity: REGRESSED*"])
    again.stdout.fnmatch_lines(["medgate: * base evaluation(s) read back from *"])

    # The base moves to the lowered bias: the head of the runs above, whose own evaluation they
    # kept under its identity, so the base worker is not asked; the head (the same model) is
    # the same as it, where a stored evaluation of the old base would have read REGRESSED.
    _commit(project, "head: nothing changed")
    moved = _run(
        pytester,
        medgate_cache,
        "--backends=eager",
        "--precisions=fp32",
        "--models=tiny_a",
        "-m",
        "accuracy",
        "--medgate-base-identical=measure",
    )
    moved.assert_outcomes(passed=1)
    moved.stdout.fnmatch_lines(["medgate: 1 base evaluation(s) read back from *"])


def test_more_activation_memory_is_regressed_against_the_base(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    (project / "zoo" / "tiny_a.py").write_text(_model("tiny_a", ballast=2_000_000))
    _commit(project, "head: tiny_a holds 8 MB more through forward")
    result = _run(pytester, medgate_cache, *INFERENCE_MEMORY)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*one batch peaks at * B, the base at * B*"])


def test_against_a_base_the_inference_ceiling_is_held_on_the_head_worker_s_trace(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    _commit(project, "head: nothing changed")
    memory = (*INFERENCE_MEMORY, "--medgate-base-identical=measure")
    recorded = _run(pytester, medgate_cache, *memory, "--update-baselines")
    recorded.assert_outcomes(passed=1)
    path = project / "baselines" / "memory" / "tiny_a.json"
    stored = json.loads(path.read_text())
    inference = stored["cases"]["eager-fp32-16-bs16-cpu"]["inference"]
    assert inference["ceiling_bytes"] >= round(inference["measured_bytes"] * 1.10)

    # A/A: the unchanged head holds the ceiling its worker's trace recorded.
    again = _run(pytester, medgate_cache, *memory)
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*tiny_a-eager-fp32-16-bs16-cpu*inference*ok*"])

    # The head's batch needs more than its ceiling (lowered here, the base comparison unchanged):
    # the ledger fails it, with no pytest-memray trace of the test to do so.
    inference["ceiling_bytes"] = inference["measured_bytes"] // 2
    path.write_text(json.dumps(stored))
    lowered = _run(pytester, medgate_cache, *memory)
    lowered.assert_outcomes(failed=1)
    lowered.stdout.fnmatch_lines(
        ["*inference * B >= ceiling * B * BEYOND LIMIT (traced in the head's worker*"]
    )
    assert "one batch peaks at" not in lowered.stdout.str()
    assert "Test was limited to" not in lowered.stdout.str()


def test_a_busy_neighbour_never_turns_into_a_false_verdict(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    _commit(project, "head: nothing changed")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = _run(
            pytester,
            medgate_cache,
            *FAKE,
            "--models=tiny_a",
            "-k",
            "not stages and not throughput",
            "--medgate-base-identical=measure",
        )
    finally:
        hog.kill()
    assert "REGRESSED" not in _verdicts(result).values()
    assert result.ret == pytest.ExitCode.OK


def test_a_base_that_cannot_be_found_is_one_error_naming_the_option(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(BaseRevisionError, match=r"--medgate-base=no-such-ref: git cannot"):
        materialize("no-such-ref", tmp_path, tmp_path / "cache")


def test_a_ref_is_exported_once_and_a_checkout_path_is_used_as_it_is(
    project: Path, tmp_path: Path
) -> None:
    (project / "zoo" / "tiny_a.py").write_text(_model("tiny_a", work=2))
    head = _commit(project, "head")
    root, label = materialize("HEAD~1", project, tmp_path / "cache")
    assert label.startswith("HEAD~1 = ")
    assert "WORK = 1" in (root / "zoo" / "tiny_a.py").read_text()
    assert materialize("HEAD~1", project, tmp_path / "cache")[0] == root
    assert root.parent == tmp_path / "cache" / "base"
    assert not head.startswith(root.name[:12])
    given, label = materialize(str(project), project, tmp_path / "cache")
    assert given == project
    assert label == f"checkout {project}"


def test_the_pre_merge_lane_picks_the_merge_base_or_says_why_it_does_not(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medgate.base.pick import pick

    git = _git(project)
    base = git("rev-parse", "HEAD").strip()
    monkeypatch.delenv("MEDGATE_BASE", raising=False)
    monkeypatch.setenv("MEDGATE_UPSTREAM", "main-line")
    assert pick(project)[0] is None  # no such upstream: stored baselines, and why
    git("branch", "main-line")
    ref, why = pick(project)
    assert ref is None
    assert "tree is clean" in why
    (project / "zoo" / "tiny_a.py").write_text(_model("tiny_a", work=2))
    assert pick(project)[0] == base  # uncommitted change on the upstream itself
    _commit(project, "head")
    assert pick(project) == (base, "the merge base of HEAD and main-line")
    monkeypatch.setenv("MEDGATE_BASE", "")
    assert pick(project)[0] is None


def test_a_base_python_that_does_not_exist_is_one_error_naming_the_option(
    pytester: pytest.Pytester, project: Path, medgate_cache: Path
) -> None:
    _commit(project, "head")
    result = _run(pytester, medgate_cache, *FAKE, "--medgate-base-python=/no/such/python", "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--medgate-base-python=/no/such/python: no such interpreter*"])
