"""The report's PNGs (matplotlib, Agg): per model the efficiency frontier, latency against input
size and memory per backend x precision; for the run the roofline and, per regressed latency
row, its reference and current rounds side by side."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

#: Every PNG is this many pixels: figsize (8, 5) inches at 100 dpi.
SIZE_INCHES = (8.0, 5.0)
DPI = 100


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _figure() -> tuple[Figure, Any]:
    figure, axes = plt.subplots(figsize=SIZE_INCHES, layout="constrained")
    return figure, axes


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower latency, higher score), by latency."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _regressed_configs(document: Mapping[str, Any]) -> set[tuple[Any, ...]]:
    by_id = {case["id"]: case for case in document["cases"]}
    found = set()
    for row in document["measurements"]:
        if row["verdict"] in ("REGRESSED", "BEYOND LIMIT") and row["case"] in by_id:
            case = by_id[row["case"]]
            found.add((case["model"], case["backend"], case["precision"], case["input_size"]))
    return found


#: One colour per backend and one marker per precision, the same in every plot.
COLOURS = {
    "eager": "tab:blue",
    "torchscript": "tab:orange",
    "onnxruntime": "tab:green",
    "compile": "tab:purple",
    "tensorrt": "tab:red",
}
MARKERS = {"fp32": "o", "fp16": "s", "bf16": "D", "int8-dynamic": "^", "int8-static": "v"}


def _style(backend: str, precision: str) -> dict[str, Any]:
    return {"color": COLOURS.get(backend, "tab:gray"), "marker": MARKERS.get(precision, "o")}


def _plain_log_ticks(axis: Any) -> None:
    """Log-scaled axes labelled 3, 10, 30 rather than 3x10^0."""
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(ScalarFormatter())


def frontier(document: Mapping[str, Any], model: str, path: Path) -> Path | None:
    """Latency (batch 1) against sensitivity, or accuracy where a model has no sensitivity, one
    point per backend x precision x size, the Pareto front drawn and labelled, regressed points
    ringed in red."""
    latency: dict[tuple[Any, ...], float] = {}
    score: dict[tuple[Any, ...], float] = {}
    metric = "sensitivity"
    for case in document["cases"]:
        if case["model"] != model:
            continue
        key = (case["backend"], case["precision"], case["input_size"])
        if "latency" in case and case["batch"] == 1:
            latency[key] = case["latency"]["p50_ms"]
        if "accuracy" in case:
            score[key] = case["accuracy"].get(metric, case["accuracy"].get("accuracy", 0.0))
    keys = sorted(set(latency) & set(score))
    if not keys:
        return None
    regressed = _regressed_configs(document)
    front = pareto_front([(latency[k], score[k] * 100) for k in keys])
    figure, axes = _figure()
    for key in keys:
        point = (latency[key], score[key] * 100)
        axes.scatter(*point, s=40, label=f"{key[0]} {key[1]}", **_style(key[0], key[1]))
        if (model, *key) in regressed:
            axes.scatter(*point, s=160, facecolors="none", edgecolors="red", linewidths=2)
        if point in front or (model, *key) in regressed:
            axes.annotate(
                f"{key[0]} {key[1]} {key[2]}px",
                point,
                fontsize=7,
                xytext=(5, -10),
                textcoords="offset points",
            )
    axes.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:green")
    axes.set_xscale("log")
    _plain_log_ticks(axes.xaxis)
    axes.set_xlabel("latency p50, batch 1 (ms, log)")
    axes.set_ylabel(f"{metric} on the test split (%)")
    axes.set_title(f"{model}: efficiency frontier (green: Pareto front; red ring: regressed)")
    _legend(axes)
    axes.grid(alpha=0.3, which="both")
    return _save(figure, path)


def _legend(axes: Any) -> None:
    handles, names = axes.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    axes.legend(unique.values(), unique.keys(), fontsize=7)


def latency_by_size(document: Mapping[str, Any], model: str, path: Path) -> Path | None:
    lines: dict[tuple[str, str], dict[int, float]] = {}
    for case in document["cases"]:
        if case["model"] == model and "latency" in case and case["batch"] == 1:
            lines.setdefault((case["backend"], case["precision"]), {})[case["input_size"]] = case[
                "latency"
            ]["p50_ms"]
    if not lines:
        return None
    figure, axes = _figure()
    for (backend, precision), points in sorted(lines.items()):
        sizes = sorted(points)
        axes.plot(sizes, [points[s] for s in sizes], marker="o", label=f"{backend} {precision}")
    axes.set_xlabel("input size (px)")
    axes.set_ylabel("latency p50, batch 1 (ms)")
    axes.set_title(f"{model}: latency against input size")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def memory_bars(document: Mapping[str, Any], model: str, path: Path) -> Path | None:
    bars: dict[str, dict[str, float]] = {}
    for case in document["cases"]:
        if case["model"] == model:
            for figure_name, size in case.get("memory", {}).items():
                label = f"{case['backend']}\n{case['precision']}\n{case['input_size']}px"
                current = bars.setdefault(figure_name, {}).get(label, 0.0)
                bars[figure_name][label] = max(current, size / 2**20)
    if not bars:
        return None
    labels = sorted({label for figures in bars.values() for label in figures})
    figure, axes = _figure()
    names = {"inference": "inference (throughput batch)", "session": "session build"}
    width = 0.8 / len(bars)
    for index, (name, values) in enumerate(sorted(bars.items())):
        axes.bar(
            [i + index * width for i in range(len(labels))],
            [values.get(label, 0.0) for label in labels],
            width,
            label=names.get(name, name),
        )
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=6)
    axes.set_ylabel("peak memory (MiB, memray)")
    axes.set_title(f"{model}: peak memory per backend x precision")
    axes.legend(fontsize=7)
    return _save(figure, path)


def distributions(row: Mapping[str, Any], path: Path) -> Path | None:
    samples = row.get("samples", {})
    if not samples.get("reference") or not samples.get("now"):
        return None
    figure, axes = _figure()
    axes.boxplot(
        [samples["reference"], samples["now"]],
        tick_labels=[f"reference ({row['reference']['kind']})", "now"],
        showfliers=True,
    )
    axes.set_ylabel("time per round (ms)")
    ratio = f" x{row['delta']:.3f}" if row["delta"] is not None else ""
    interval = f" [{row['ci'][0]:.3f}, {row['ci'][1]:.3f}]" if row["ci"] else ""
    axes.set_title(f"{row['case']}: {row['metric']}{ratio}{interval} {row['verdict']}", fontsize=9)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def roofline(document: Mapping[str, Any], path: Path) -> Path | None:
    """Achieved FLOP/s of every timed case against its FLOPs per byte of weights, under the
    roof of each measured dtype: min(peak, copy bandwidth x intensity)."""
    shard = next((s for s in document["shards"] if s["peaks"]), None)
    points = [c for c in document["cases"] if "latency" in c and c["latency"].get("efficiency")]
    if shard is None or not points:
        return None
    peaks = shard["peaks"]
    bandwidth = peaks.get("bandwidth")
    figure, axes = _figure()
    intensities = []
    for case in points:
        intensity = case["latency"]["flops"] / max(1, case["latency"].get("param_bytes") or 1)
        intensities.append(intensity)
        axes.scatter(
            intensity,
            case["latency"]["achieved_flops"] / 1e9,
            s=28 if case["batch"] == 1 else 14,
            label=f"{case['backend']} {case['precision']}",
            **_style(case["backend"], case["precision"]),
        )
    top = max(peak["flops"] for peak in peaks["by_dtype"].values())
    low = min(min(intensities) / 2, top / bandwidth / 2) if bandwidth else min(intensities) / 2
    high = max(intensities) * 2
    for dtype, peak in peaks["by_dtype"].items():
        flops = peak["flops"]
        ridge = flops / bandwidth if bandwidth else low
        xs = [low, max(low, ridge), high]
        ys = [min(flops, x * bandwidth) if bandwidth else flops for x in xs]
        axes.plot(xs, [y / 1e9 for y in ys], linestyle="--", linewidth=1, color="black")
        axes.annotate(
            f"{dtype} peak {flops / 1e9:.0f} G/s ({peak['kernel']})",
            (high, flops / 1e9),
            fontsize=7,
            ha="right",
            va="bottom",
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    _plain_log_ticks(axes.yaxis)
    axes.set_xlabel("FLOPs per byte of weights (batch size raises it)")
    axes.set_ylabel("achieved GFLOP/s (GOP/s for int8)")
    _legend(axes)
    axes.set_title("roofline: each case under the peaks measured in this run")
    axes.grid(alpha=0.3, which="both")
    return _save(figure, path)


def draw_all(document: Mapping[str, Any], directory: Path) -> dict[str, list[str]]:
    """Every plot of ``document`` under ``directory/plots``; model (``""``: the run) -> paths
    relative to ``directory``."""
    made: dict[str, list[str]] = {}
    plots = directory / "plots"
    models = sorted({case["model"] for case in document["cases"]})
    for model in models:
        for name, draw in (
            ("frontier", frontier),
            ("latency-by-size", latency_by_size),
            ("memory", memory_bars),
        ):
            drawn = draw(document, model, plots / f"{_slug(model)}-{name}.png")
            if drawn is not None:
                made.setdefault(model, []).append(str(drawn.relative_to(directory)))
    drawn_roofline = roofline(document, plots / "roofline.png")
    if drawn_roofline is not None:
        made.setdefault("", []).append(str(drawn_roofline.relative_to(directory)))
    for row in document["measurements"]:
        if row["gate"] == "latency" and row["verdict"] == "REGRESSED":
            name = _slug(f"{row['case']}-{row['metric']}")
            drawn = distributions(row, plots / f"rounds-{name}.png")
            if drawn is not None:
                model = next(c["model"] for c in document["cases"] if c["id"] == row["case"])
                made.setdefault(model, []).append(str(drawn.relative_to(directory)))
    return made
