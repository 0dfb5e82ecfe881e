"""The latency gate end to end, on a backend of controllable speed (tests/fake_backend.py): no
false alarm on unchanged code, a 15 % slowdown regressed in one run, an unsure case measured
again until decided, another machine refused and then compared in reference-workload units."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import AVX2_ONLY_CPU, HERE, RunSuite

FAKE = (
    "--backends=fake_speed",
    "--device=cpu",
    "--throughput-batch=2",
    "--benchmark-min-rounds=30",
    "--benchmark-max-time=0.05",
    "-m",
    "latency",
)
#: fp32, fp16, int8-dynamic and int8-static (bf16 skips on the faked AVX2-only CPU) at 16 and
#: 32 px, latency and throughput: 16 measurements per run.
TIMED = 16


@pytest.fixture
def fake_suite(pytester: pytest.Pytester, suite_dir: Path) -> Path:
    shutil.copy(HERE / "fake_backend.py", suite_dir / "fake_backend.py")
    pytester.makeini(
        "[pytest]\n"
        "pythonpath = .\n"
        "medgate_zoo =\n    tiny_zoo\n    fake_backend\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
    )
    pytester.makeconftest(
        AVX2_ONLY_CPU + "\nimport os\n\n"
        "def pytest_medgate_fingerprint(config, fingerprint):\n"
        "    fingerprint['runner'] = os.environ.get('FAKE_RUNNER', 'a')\n"
    )
    return suite_dir


def _table_rows(result: pytest.RunResult) -> list[list[str]]:
    """The cells of the latency table's rows."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "medgate: latency on" in line)
    rows = []
    for line in lines[start + 3 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _verdicts(result: pytest.RunResult) -> list[str]:
    return [row[-1] for row in _table_rows(result)]


def _machines(root: Path) -> list[str]:
    return sorted(path.name for path in (root / "baselines" / "latency").iterdir())


def test_unchanged_code_raises_no_alarm_in_thirty_two_comparisons(
    fake_suite: Path, run_suite: RunSuite
) -> None:
    cases = (*FAKE, "-k", "not stages")
    recorded = run_suite(*cases, "--update-baselines")
    recorded.assert_outcomes(passed=TIMED, skipped=TIMED // 4)
    (path,) = (fake_suite / "baselines" / "latency").glob("*/tiny_cnn.json")
    entry = json.loads(path.read_text())["measurements"]["tiny_cnn-fake_speed-fp32-16-bs1-cpu"]
    assert len(entry["series_us"]["model"].split()) == len(entry["reference_us"].split()) >= 30

    for _ in range(2):
        rerun = run_suite(*cases)
        verdicts = _verdicts(rerun)
        assert len(verdicts) == TIMED
        assert "REGRESSED" not in verdicts
        rerun.assert_outcomes(passed=TIMED, skipped=TIMED // 4)


def test_a_fifteen_percent_slowdown_is_regressed_in_one_run(
    fake_suite: Path, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tolerance 5 %: the spin-to-deadline fake is not immune to this shared machine's own drift
    # between two processes (a 15 % slowdown once read x1.104 [1.082, 1.129]), and what is
    # tested here is that a slowdown well beyond the tolerance is regressed in one run.
    cases = (*FAKE, "--precisions=fp32,int8-static", "--input-sizes=16", "--latency-tolerance=5")
    run_suite(*cases, "--update-baselines").assert_outcomes(passed=6)
    monkeypatch.setenv("MEDGATE_FAKE_CODE", "1.15")
    slower = run_suite(*cases)
    # Every measurement: the fake slows the model, so its feature extractor and head too.
    # Preprocessing is medgate's own code, timed for real and not slowed: not asserted on.
    slower.assert_outcomes(failed=6)
    verdicts = {(row[0], row[1]): row[-1] for row in _table_rows(slower)}
    assert len(verdicts) == 10
    for (key, series), verdict in verdicts.items():
        if series != "preprocess":
            assert verdict == "REGRESSED", (key, series)
    slower.stdout.fnmatch_lines(
        ["*tiny_cnn-fake_speed-fp32-16-bs1-cpu: slower than the baseline in baselines/latency/*"]
    )


def test_an_unsure_case_is_measured_again_until_decided(
    fake_suite: Path, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = (*FAKE, "--precisions=fp32", "--input-sizes=16", "-k", "not throughput and not stages")
    run_suite(*case, "--update-baselines").assert_outcomes(passed=1)
    monkeypatch.setenv("MEDGATE_FAKE_CODE", "1.15")
    # The first 8 rounds alternate 0.4x and 2.5x: no interval can decide on them.
    monkeypatch.setenv("MEDGATE_FAKE_NOISY_CALLS", "14")
    result = run_suite(
        *case, "--benchmark-min-rounds=8", "--benchmark-max-time=0.001", "--benchmark-json=out.json"
    )
    result.assert_outcomes(failed=1)
    (row,) = _table_rows(result)
    assert row[2].startswith(("16 (1 re-measured)", "32 (2 re-measured)"))
    assert row[-1] == "REGRESSED"
    extra = json.loads((fake_suite / "out.json").read_text())["benchmarks"][0]
    # Re-measured rounds reach pytest-benchmark's statistics too.
    assert extra["stats"]["rounds"] == extra["extra_info"]["rounds"] == int(row[2].split()[0])
    assert extra["extra_info"]["remeasures"] >= 1


def test_another_machine_is_refused_then_compared_in_reference_units(
    fake_suite: Path, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = (*FAKE, "--precisions=fp32", "--input-sizes=16", "-k", "not stages")
    run_suite(*cases, "--update-baselines").assert_outcomes(passed=2)
    (machine_a,) = _machines(fake_suite)

    # Machine b is twice as slow at everything, the reference workload included.
    monkeypatch.setenv("FAKE_RUNNER", "b")
    monkeypatch.setenv("MEDGATE_FAKE_MACHINE", "2")
    refused = run_suite(*cases)
    refused.assert_outcomes(passed=2)
    assert _verdicts(refused) == ["other machine"] * 2
    refused.stdout.fnmatch_lines(
        [
            f"*refused: the latency baselines of tiny_cnn were measured on {machine_a}, not on "
            f"this machine*runner: 'b' here, 'a' there*--latency-baseline-machine={machine_a}*"
        ]
    )

    normalized = run_suite(*cases, f"--latency-baseline-machine={machine_a}")
    normalized.assert_outcomes(passed=2)
    rows = _table_rows(normalized)
    assert [row[-2:] for row in rows] == [["normalized", "same"]] * 2

    monkeypatch.setenv("MEDGATE_FAKE_CODE", "1.15")
    slower_code = run_suite(*cases, f"--latency-baseline-machine={machine_a}")
    slower_code.assert_outcomes(failed=2)
    slower_code.stdout.fnmatch_lines(["*in units of the reference workload*"])


def test_a_stage_regression_is_located(
    fake_suite: Path, run_suite: RunSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = (*FAKE, "--precisions=fp32", "--input-sizes=16", "-k", "stages")
    run_suite(*case, "--update-baselines").assert_outcomes(passed=1)
    # A slower feature extractor: the head is untouched.
    monkeypatch.setenv("MEDGATE_FAKE_CODE", "1.5")
    monkeypatch.setenv("MEDGATE_FAKE_CODE_STAGE", "features")
    result = run_suite(*case)
    result.assert_outcomes(failed=1)
    verdicts = {row[1]: row[-1] for row in _table_rows(result)}
    assert verdicts["features"] == "REGRESSED"
    assert verdicts["head"] != "REGRESSED"
    result.stdout.fnmatch_lines(["*-bs1-cpu:features: slower than the baseline*features x*"])


BUDGET = """
[[budget]]
name = "tiny on a CPU, one image"
models = "tiny_*"
device = "cpu-*"
batch = 1
statistic = "p95"
max_ms = 0.001
"""


def test_a_case_over_its_budget_fails_naming_it(fake_suite: Path, run_suite: RunSuite) -> None:
    case = (*FAKE, "--precisions=fp32", "--input-sizes=16", "-k", "not stages")
    budgets = fake_suite / "baselines" / "budgets.toml"
    budgets.parent.mkdir()
    budgets.write_text(BUDGET)
    over = run_suite(*case, "--benchmark-min-rounds=10")
    # The batch-1 case is over; the throughput case is not matched by `batch = 1`.
    over.assert_outcomes(passed=1, failed=1)
    over.stdout.fnmatch_lines(["*over budget 'tiny on a CPU, one image': p95 * ms > 0.001 ms*"])


def test_a_malformed_budget_file_stops_the_run_naming_the_field(
    fake_suite: Path, run_suite: RunSuite
) -> None:
    budgets = fake_suite / "baselines" / "budgets.toml"
    budgets.parent.mkdir()
    budgets.write_text("[[budget]]\nname = 'x'\nmax_ms = -1\n")
    result = run_suite(*FAKE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (error,) = [line for line in result.stderr.lines if "budgets.toml" in line]
    assert "budget[0].max_ms: expected a finite number > 0, got -1" in error


def test_a_malformed_latency_baseline_is_one_error_naming_file_and_field(
    fake_suite: Path, run_suite: RunSuite
) -> None:
    cases = (*FAKE, "--precisions=fp32", "--input-sizes=16", "-k", "not throughput and not stages")
    run_suite(*cases, "--update-baselines").assert_outcomes(passed=1)
    (path,) = (fake_suite / "baselines" / "latency").glob("*/tiny_cnn.json")
    payload = json.loads(path.read_text())
    payload["measurements"]["tiny_cnn-fake_speed-fp32-16-bs1-cpu"]["reference_us"] = "12 x"
    path.write_text(json.dumps(payload))
    result = run_suite(*cases)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*tiny_cnn.json: field measurements.tiny_cnn-fake_speed-fp32-16-bs1-cpu.reference_us:*"]
    )
    # Another machine's broken file is read too (a refusal names what differs): still one
    # error at start-up, not one per case.
    path.parent.rename(path.parent.with_name("another-machine"))
    result = run_suite(*cases)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*another-machine/tiny_cnn.json: field measurements.*.reference_us:*"]
    )
