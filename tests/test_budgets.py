"""Absolute latency budgets: which cases a budget covers, when it fails, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgate.core.files import BaselineError
from medgate.core.matrix import Case
from medgate.gates.latency.budgets import Budget, load_budgets

LATENCY = Case("pneumonia_resnet18", "onnxruntime", "fp32", 64, 1, "cuda")
THROUGHPUT = Case("pneumonia_resnet18", "onnxruntime", "fp32", 64, 16, "cuda")


def test_a_budget_covers_the_cases_its_globs_and_numbers_name() -> None:
    budget = Budget("pneumonia < 3 ms", models="pneumonia_*", device="cuda-*", batch=1, max_ms=3)
    assert budget.matches(LATENCY, "cuda-nvidia-h100")
    assert not budget.matches(LATENCY, "cpu-2core")
    assert not budget.matches(THROUGHPUT, "cuda-nvidia-h100")
    assert not Budget("x", input_sizes=(224,), max_ms=3).matches(LATENCY, "cuda-a")


def test_a_time_budget_fails_above_its_statistic() -> None:
    budget = Budget("under 3 ms", statistic="p95", max_ms=3.0)
    rounds = [0.002] * 95 + [0.010] * 5
    assert budget.exceeded(LATENCY, rounds) is None  # p95 sits at the edge of the slow tail
    problem = budget.exceeded(LATENCY, [0.002] * 90 + [0.010] * 10)
    assert problem is not None
    assert problem.startswith("over budget 'under 3 ms': p95 ")


def test_a_throughput_budget_fails_below_its_rate() -> None:
    budget = Budget("2000/s", min_samples_per_s=2000)
    assert budget.exceeded(THROUGHPUT, [0.007] * 10) is None  # 16 / 7 ms = 2286/s
    problem = budget.exceeded(THROUGHPUT, [0.009] * 10)  # 1778/s
    assert problem is not None
    assert "1778 samples/s at the p50 < 2000 samples/s" in problem


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("[[budget]]\nname = 'x'\nmax_ms = -1\n", "budget[0].max_ms: expected a finite number > 0"),
        ("[[budget]]\nname = 'x'\nmax_ms = nan\n", "budget[0].max_ms: expected a finite"),
        ("[[budget]]\nname = 'x'\nmin_samples_per_s = inf\n", "expected a finite number"),
        ("[[budget]]\nname = 'x'\nmax_ms = 3\nstatistic = 'p42'\n", "budget[0].statistic"),
        ("[[budget]]\nname = 'x'\nmax_ms = 3\nmodel = 'x'\n", "unknown field(s) ['model']"),
        ("[[budget]]\nname = 'x'\n", "give exactly one of max_ms, min_samples_per_s"),
        ("[[budget]]\nmax_ms = 3\n", "budget[0].name: give each budget a name"),
        ("[[budget]]\nname = 'x'\nmax_ms = 3\ninput_sizes = 224\n", "budget[0].input_sizes"),
        ("[[budget]\n", "not readable TOML"),
        ("[limits]\nx = 1\n", "expected only [[budget]] tables"),
    ],
)
def test_a_malformed_budget_file_names_the_field(tmp_path: Path, content: str, named: str) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(content)
    with pytest.raises(BaselineError, match=r"budgets\.toml") as error:
        load_budgets(path)
    assert named in str(error.value)


def test_the_shipped_budgets_file_is_valid() -> None:
    budgets = load_budgets(Path(__file__).resolve().parents[1] / "baselines" / "budgets.toml")
    assert {budget.device for budget in budgets} == {"cpu-2core", "cuda-*"}
