"""Tables from a pytest-benchmark JSON file: one row per case, grouped as the matrix is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tabulate import tabulate

COLUMNS = (
    "model",
    "size",
    "batch",
    "device",
    "backend",
    "precision",
    "median ms",
    "IQR ms",
    "samples/s",
    "MFLOP/sample",
    "artifact MB",
    "compile s",
    "first call s",
)


def load_runs(path: Path) -> list[dict[str, Any]]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable pytest-benchmark JSON file ({error})") from error
    benchmarks = payload.get("benchmarks") if isinstance(payload, dict) else None
    if not isinstance(benchmarks, list):
        raise ValueError(f"{path}: has no 'benchmarks' list; pass a --benchmark-json/save file")
    return [b for b in benchmarks if "model" in b.get("extra_info", {})]


def rows(benchmarks: list[dict[str, Any]], largest_only: bool = False) -> list[list[Any]]:
    table = []
    largest: dict[str, int] = {}
    for bench in benchmarks:
        info = bench["extra_info"]
        largest[info["model"]] = max(largest.get(info["model"], 0), info["input_size"])
    for bench in benchmarks:
        info, stats = bench["extra_info"], bench["stats"]
        if largest_only and info["input_size"] != largest[info["model"]]:
            continue
        artifact = info.get("artifact_bytes")
        table.append(
            [
                info["model"],
                info["input_size"],
                info["batch"],
                info["device"],
                info["backend"],
                info["precision"],
                round(stats["median"] * 1e3, 2),
                round(stats["iqr"] * 1e3, 2),
                round(info["batch"] / stats["median"], 1),
                round(info["flops_per_sample"] / 1e6),
                round(artifact / 1e6, 1) if artifact else "",
                _seconds(info.get("compile_s")),
                _seconds(info.get("first_call_s")),
            ]
        )
    table.sort(key=lambda row: (row[0], -row[1], row[2], row[3], row[6]))
    return table


def _seconds(value: float | None) -> str:
    """Blank where a figure does not apply or an older baseline lacks it."""
    return "" if value is None else f"{value:.2f}"


def render(path: Path, largest_only: bool = False, fmt: str = "github") -> str:
    table: str = tabulate(rows(load_runs(path), largest_only), headers=COLUMNS, tablefmt=fmt)
    return table
