"""The run's report end to end: the injected regression heads report.md, results.json follows its
schema, every PNG is an image of the stated size, shards merge into the report of one run; and
the pieces it rests on: peaks, the power model, the Pareto front, the above-peak warning."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import AVX2_ONLY_CPU, HERE, RunSuite
from medgate.cli import main
from medgate.core import energy, peaks
from medgate.core.machine import Cpu
from medgate.results.collect import _parse_id, above_peak_notes
from medgate.results.markdown import render
from medgate.results.merge import merge, split
from medgate.results.plots import DPI, SIZE_INCHES, pareto_front
from medgate.results.schema import ResultsError, load, validate

#: A second model in the test project: tiny_cnn's architecture and weights under another name,
#: so a run has two models to shard by.
TWIN = """
import dataclasses
import os

from tiny_zoo import SPEC, tiny_cnn

from medgate import register_model


@register_model(dataclasses.replace(SPEC, name="tiny_twin", weights_from="tiny_cnn"))
def tiny_twin():
    model = tiny_cnn()
    # The fake backend multiplies this model's time by it: a change to tiny_twin's code alone.
    model.fake_cost = float(os.environ.get("TWIN_COST", "1"))
    return model
"""

CASES = (
    "--backends=fake_speed",
    "--device=cpu",
    # bf16 skips on the faked AVX2-only CPU: the report must say so.
    "--precisions=fp32,int8-static,bf16",
    "--input-sizes=16",
    "--throughput-batch=2",
    "--benchmark-min-rounds=30",
    "--benchmark-max-time=0.05",
    "--latency-tolerance=5",
    "--medgate-report=medgate-report",
    "-k",
    "not stages",
)


@pytest.fixture
def twin_suite(pytester: pytest.Pytester, suite_dir: Path) -> Path:
    shutil.copy(HERE / "fake_backend.py", suite_dir / "fake_backend.py")
    (suite_dir / "tiny_twin.py").write_text(TWIN)
    pytester.makeini(
        "[pytest]\n"
        "pythonpath = .\n"
        "medgate_zoo =\n    tiny_zoo\n    tiny_twin\n    fake_backend\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
    )
    pytester.makeconftest(AVX2_ONLY_CPU)
    return suite_dir


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_the_injected_regression_heads_the_report_and_shards_merge_into_one(
    twin_suite: Path,
    run_suite: RunSuite,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    run_suite(*CASES, "-m", "latency", "--update-baselines").assert_outcomes(passed=8, skipped=4)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    # tiny_twin 30 % slower; tiny_cnn unchanged.
    monkeypatch.setenv("TWIN_COST", "1.3")
    slower = run_suite(*CASES, "-m", "not accuracy")
    # Per model, bf16's latency, throughput, two memory figures and agreement skip.
    slower.assert_outcomes(failed=4, passed=16, skipped=10)
    report_dir = twin_suite / "medgate-report"
    document = load(report_dir / "results.json")
    markdown = (report_dir / "report.md").read_text()

    assert markdown.startswith("## medgate: FAIL")
    first_table = markdown.split("### Regressions")[1].split("\n\n")[1]
    regressed = {
        row.split("|")[1].strip(" `")
        for row in first_table.splitlines()[2:]
        if "REGRESSED" in row and "| latency |" in row
    }
    assert regressed == {
        f"tiny_twin-fake_speed-{p}-16-bs{b}-cpu" for p in ("fp32", "int8-static") for b in (1, 2)
    }
    assert not any("tiny_cnn" in row for row in first_table.splitlines())
    assert (tmp_path / "summary.md").read_text().startswith("## medgate: FAIL")
    skipped = {case["id"]: case["skipped"] for case in document["cases"] if "skipped" in case}
    assert len(skipped) == 6  # per model: bf16 at batch 1, the throughput and agreement batches
    assert all("no native bf16" in why for why in skipped.values())
    assert "<summary>Skipped (6), each with why</summary>" in markdown
    slower.stdout.fnmatch_lines(["medgate: wall time * s: *latency * s*", "medgate: report *"])

    # Every case has its roofline efficiency against the peak measured in the run.
    timed = [case for case in document["cases"] if "latency" in case]
    assert timed
    assert all(case["latency"]["efficiency"] > 0 for case in timed)
    assert document["shards"][0]["peaks"]["by_dtype"]["fp32"]["flops"] > 0
    assert document["shards"][0]["power"]["source"] in ("rapl", "assumed")

    pngs = sorted((report_dir / "plots").glob("*.png"))
    names = {path.name for path in pngs}
    assert {
        "tiny_cnn-latency-by-size.png",
        "tiny_twin-latency-by-size.png",
        "roofline.png",
    } <= names
    assert sum(name.startswith("rounds-tiny_twin") for name in names) == 4
    expected = (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))
    assert all(_png_size(path) == expected for path in pngs)
    assert all(f"(plots/{path.name})" in markdown for path in pngs)

    # The two halves of the run, as two shards would write them, merge into the same report.
    cnn, twin = split(document, {"tiny_cnn"})
    for name, half in (("cnn", cnn), ("twin", twin)):
        (tmp_path / f"{name}.json").write_text(json.dumps(half))
    assert main(["report", str(tmp_path / "cnn.json"), str(tmp_path / "twin.json"),
                 "--out", str(tmp_path / "merged")]) == 1  # fmt: skip
    assert main(["report", str(report_dir / "results.json"), "--out", str(tmp_path / "one")]) == 1
    assert (tmp_path / "merged" / "report.md").read_text() == (
        tmp_path / "one" / "report.md"
    ).read_text()
    assert load(tmp_path / "merged" / "results.json") == document


def _document() -> dict[str, Any]:
    """A minimal valid document: one shard, one case, one latency row."""
    return {
        "schema": "medgate-results/1",
        "shards": [
            {
                "name": "m",
                "started": "2026-11-26T00:00:00+00:00",
                "wall_s": 1.0,
                "lanes_s": {"latency": 1.0},
                "outcome": "passed",
                "machine": {"fingerprint_id": "fake", "facts": {}},
                "threads": 2,
                "versions": {"python": "3.11"},
                "reference": {"kind": "baselines", "dir": "baselines"},
                "peaks": None,
                "power": None,
                "notes": [],
            }
        ],
        "cases": [
            {
                "id": "m-eager-fp32-16-bs1-cpu",
                "model": "m",
                "backend": "eager",
                "precision": "fp32",
                "input_size": 16,
                "batch": 1,
                "device": "cpu",
                "shard": 0,
            }
        ],
        "measurements": [
            {
                "case": "m-eager-fp32-16-bs1-cpu",
                "shard": 0,
                "gate": "latency",
                "metric": "p50",
                "unit": "ms",
                "reference": {"kind": "baseline", "source": "x", "value": 1.0},
                "now": 1.5,
                "delta": 1.5,
                "ci": [1.4, 1.6],
                "verdict": "REGRESSED",
                "why": "slower",
                "fix": "look",
            }
        ],
    }


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(schema="medgate-results/0"), "field schema"),
        (lambda d: d["measurements"][0].update(verdict="maybe"), "measurements/0/verdict"),
        (lambda d: d["cases"][0].pop("batch"), "field cases/0"),
        (lambda d: d["shards"][0].update(outcome="fine"), "shards/0/outcome"),
    ],
)
def test_a_results_file_that_breaks_the_schema_is_refused_naming_the_field(
    tmp_path: Path, edit: Any, field: str
) -> None:
    document = _document()
    validate(copy.deepcopy(document), "ok.json")
    edit(document)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ResultsError, match=rf"{path}: .*{field}.*re-run|{path}: field schema"):
        load(path)


def test_shards_split_by_lane_merge_and_a_figure_measured_twice_is_refused() -> None:
    latency = _document()
    memory = copy.deepcopy(latency)
    memory["shards"][0]["name"] = "memory lane"
    memory["cases"][0]["memory"] = {"session": 1024}
    memory["measurements"][0].update(gate="memory", metric="session peak", unit="MiB")
    merged = merge([("a.json", latency), ("b.json", memory)])
    assert [shard["name"] for shard in merged["shards"]] == ["m", "memory lane"]
    (case,) = merged["cases"]
    assert case["memory"] == {"session": 1024}
    assert [row["gate"] for row in merged["measurements"]] == ["latency", "memory"]
    assert [row["shard"] for row in merged["measurements"]] == [0, 1]
    with pytest.raises(ResultsError, match=r"b.json: field measurements: .* also in a.json"):
        merge([("a.json", latency), ("b.json", latency)])


def test_a_case_faster_than_its_peak_says_the_peak_is_wrong() -> None:
    case = {"id": "c", "latency": {"efficiency": 1.45, "peak_dtype": "fp32"}}
    (note,) = above_peak_notes([case, {"id": "d", "latency": {"efficiency": 0.5}}])
    assert "c runs at 145% of the measured fp32 peak: the peak is wrong" in note
    document = _document()
    document["cases"][0]["latency"] = {
        "p50_ms": 1.5,
        "p95_ms": 1.6,
        "samples_per_s": 600.0,
        "rounds": 5,
        "efficiency": 1.45,
    }
    assert "145% (above peak!)" in render(document)


def test_a_skipped_case_is_described_from_its_id() -> None:
    assert _parse_id("pneumonia_resnet18-onnxruntime-int8-static-64-bs16-cpu") == {
        "id": "pneumonia_resnet18-onnxruntime-int8-static-64-bs16-cpu",
        "model": "pneumonia_resnet18",
        "backend": "onnxruntime",
        "precision": "int8-static",
        "input_size": 64,
        "batch": 16,
        "device": "cpu",
    }


def test_the_pareto_front_keeps_points_no_other_beats_on_both_axes() -> None:
    points = [(3.0, 73.0), (2.0, 63.0), (3.1, 73.0), (20.0, 73.0), (9.0, 80.0), (1.0, 50.0)]
    assert pareto_front(points) == [(1.0, 50.0), (2.0, 63.0), (3.0, 73.0), (9.0, 80.0)]


def test_peaks_name_their_best_kernel_and_why_a_class_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = Cpu("AuthenticAMD", "Fake Zen 3", 25, 1, 1, frozenset({"avx2", "fma"}))
    monkeypatch.setattr(peaks, "cpu", lambda: fake)
    measured = peaks.measure_peaks("cpu", threads=1, size=256)
    fp32 = measured.by_dtype["fp32"]
    assert fp32.flops > 0
    assert fp32.kernel in fp32.kernels
    assert set(fp32.kernels) == {"torch.mm", "onnxruntime MatMul"}
    assert "no native bf16" in measured.missing["bf16"]
    assert measured.for_precision("bf16") is fp32
    assert measured.for_precision("fp16") is fp32
    int8 = measured.for_precision("int8-static")
    assert int8 is not None
    assert int8.dtype == "int8"
    assert not int8.native
    assert measured.bandwidth is not None
    assert measured.bandwidth > 0
    assert peaks.Peaks.from_dict(measured.as_dict()) == measured


def test_the_power_model_reads_rapl_where_present_and_says_when_it_assumes(
    tmp_path: Path,
) -> None:
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    counter = zone / "energy_uj"
    counter.write_text("1000000")

    def load() -> None:
        # 0.01 J per call: a package that draws more while the GEMM runs.
        counter.write_text(str(int(counter.read_text()) + 10_000))

    model = energy.power_model("cpu", 2, 5.0, load, root=tmp_path)
    assert model.source == "rapl"
    assert model.watts > 0
    assert model.joules(0.01, 2, "cpu") == pytest.approx(0.02 * model.watts)
    assumed = energy.power_model("cpu", 2, 5.0, load, root=tmp_path / "none")
    assert assumed.source == "assumed"
    assert assumed.watts == 5.0
    assert "no RAPL counters" in assumed.detail
    assert "assumed" in assumed.detail


def test_a_model_row_shows_its_own_verdict_not_another_models() -> None:
    document = _document()
    other = copy.deepcopy(document["cases"][0])
    other.update(id="n-eager-fp32-16-bs1-cpu", model="n")
    document["cases"].append(other)
    same = copy.deepcopy(document["measurements"][0])
    same.update(case=other["id"], verdict="same")
    document["measurements"].append(same)
    markdown = render(document)
    model_n = markdown.split("<b>n</b>")[1].split("</details>")[0]
    assert "| eager | fp32 | 16 | cpu |" in model_n
    assert "REGRESSED" not in model_n
    assert "same |" in model_n


def test_one_set_of_weights_is_shown_at_every_size_beside_the_model_loading_it() -> None:
    """The seeds' trade-off: accuracy and p50 per input size, and the variant that loads the
    same weights (upsampling in forward) in the same table."""
    document = _document()
    template = document["cases"][0]
    measured = {
        ("m", 64): (0.825, 1.2),
        ("m", 224): (0.798, 9.5),
        ("m_upsampled", 64): (0.801, 9.9),
    }
    document["cases"] = []
    for (model, size), (accuracy, p50) in measured.items():
        case = copy.deepcopy(template)
        case.update(id=f"{model}-eager-fp32-{size}-bs1-cpu", model=model, input_size=size)
        case["accuracy"] = {"accuracy": accuracy}
        case["latency"] = {"p50_ms": p50, "p95_ms": p50, "samples_per_s": 1e3 / p50, "rounds": 9}
        if model != "m":
            case["weights_from"] = "m"
        document["cases"].append(case)
    validate(document, "test")
    markdown = render(document)
    section = markdown.split("### Size trade-off")[1]
    family = section.split("<b>m</b> across sizes")[1].split("</details>")[0]
    assert "82.5% at 224 px" not in family
    assert "eager fp32: 79.8% at 224 px · 82.5% at 64 px" in family
    assert "| m | eager | fp32 | cpu | 79.8% · 9.50 ms | 82.5% · 1.20 ms | 2.7 pp |" in family
    assert "| m_upsampled | eager | fp32 | cpu |  | 80.1% · 9.90 ms |  |" in family
    assert "<b>m_upsampled</b> across" not in section


def test_a_run_of_one_size_per_model_has_no_size_trade_off() -> None:
    assert "Size trade-off" not in render(_document())
