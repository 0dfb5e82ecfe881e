"""The seeds' size trade-off: one set of weights at every input size, accuracy beside latency.

"256 -> 224 -> 192 loses < 0.5 % accuracy" is a claim about one checkpoint served at several
sizes; so is "64 px native vs 64 upsampled to 224 in forward()". A family is a model and the
models that load its weights (``weights_from``); each row is one backend x precision x device of
one of them, each column one input size, each cell accuracy and p50 latency at batch 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def _family(case: Mapping[str, Any]) -> str:
    return str(case.get("weights_from") or case["model"])


def _cell(accuracy: float | None, p50_ms: float | None) -> str:
    parts = []
    if accuracy is not None:
        parts.append(f"{accuracy:.1%}")
    if p50_ms is not None:
        parts.append(f"{p50_ms:.2f} ms")
    return " · ".join(parts)


def _figures(
    cases: Sequence[Mapping[str, Any]],
) -> dict[tuple[Any, ...], dict[int, dict[str, float]]]:
    """(model, backend, precision, device) -> size -> accuracy and p50 (batch 1)."""
    figures: dict[tuple[Any, ...], dict[int, dict[str, float]]] = {}
    for case in cases:
        if "skipped" in case:
            continue
        key = (case["model"], case["backend"], case["precision"], case["device"])
        cell = figures.setdefault(key, {}).setdefault(int(case["input_size"]), {})
        accuracy = case.get("accuracy", {}).get("accuracy")
        if accuracy is not None:
            cell["accuracy"] = float(accuracy)
        if "latency" in case and case["batch"] == 1:
            cell["p50_ms"] = float(case["latency"]["p50_ms"])
    return figures


def spread_pp(by_size: Mapping[int, Mapping[str, float]]) -> float | None:
    """The best size's accuracy minus the worst's, in percentage points."""
    values = [cell["accuracy"] for cell in by_size.values() if "accuracy" in cell]
    return (max(values) - min(values)) * 100 if len(values) > 1 else None


@dataclass(frozen=True)
class FamilyTable:
    family: str
    #: The reference row's (eager fp32 on CPU of the family's own model) accuracy per size.
    summary: str
    headers: list[str]
    rows: list[list[str]]


def family_tables(cases: Sequence[Mapping[str, Any]]) -> list[FamilyTable]:
    """One table per family measured at more than one size or by more than one model (a smoke
    run, one size per model, has none)."""
    families: dict[str, list[Mapping[str, Any]]] = {}
    for case in cases:
        families.setdefault(_family(case), []).append(case)
    tables = []
    for family, members in sorted(families.items()):
        figures = _figures(members)
        sizes = sorted({size for by_size in figures.values() for size in by_size}, reverse=True)
        if len(sizes) < 2 and len({key[0] for key in figures}) < 2:
            continue
        rows = []
        for key in sorted(figures, key=lambda k: (k[0] != family, k)):
            by_size = figures[key]
            spread = spread_pp(by_size)
            cells = [
                _cell(by_size.get(s, {}).get("accuracy"), by_size.get(s, {}).get("p50_ms"))
                for s in sizes
            ]
            rows.append([*key, *cells, f"{spread:.1f} pp" if spread is not None else ""])
        reference = figures.get((family, "eager", "fp32", "cpu"), {})
        summary = " · ".join(
            f"{reference[s]['accuracy']:.1%} at {s} px"
            for s in sizes
            if "accuracy" in reference.get(s, {})
        )
        headers = ["model", "backend", "precision", "device", *(f"{s} px" for s in sizes)]
        tables.append(FamilyTable(family, summary, [*headers, "accuracy spread"], rows))
    return tables
