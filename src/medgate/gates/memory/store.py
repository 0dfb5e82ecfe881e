"""Stored memory ceilings: one reviewed JSON file per model, ``baselines/memory/<model>.json``.

Per case and figure (``inference``: one batch through a prepared session; ``session``: building
the session, export and quantization included; ``cuda_peak``: ``torch.cuda.max_memory_allocated``
over one batch) the file keeps the measured bytes and the ceiling the gate holds the case to:
measured x (1 + headroom), written only on ``--update-baselines``, atomically, sorted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgate.core.files import BaselineError, atomic_write_bytes, load_json, rerecord_hint

SCHEMA = 1
FIGURES = ("inference", "session", "cuda_peak")


@dataclass(frozen=True)
class Ceiling:
    measured_bytes: int
    ceiling_bytes: int


@dataclass
class MemoryBaseline:
    """``depends_on`` names what the figures were measured under (versions, threads, CPU):
    a reviewer comparing two files sees why a figure moved."""

    model: str
    headroom: float
    depends_on: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, dict[str, Ceiling]] = field(default_factory=dict)


def memory_path(directory: Path, model: str) -> Path:
    return directory / "memory" / f"{model}.json"


def to_json(baseline: MemoryBaseline) -> str:
    payload = {
        "schema": SCHEMA,
        "model": baseline.model,
        "headroom": baseline.headroom,
        "depends_on": baseline.depends_on,
        "cases": {
            case: {figure: vars(ceiling) for figure, ceiling in figures.items()}
            for case, figures in baseline.cases.items()
        },
    }
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def write_memory_baseline(path: Path, baseline: MemoryBaseline) -> None:
    atomic_write_bytes(path, to_json(baseline).encode())


def read_memory_baseline(path: Path) -> MemoryBaseline | None:
    """The file's ceilings, None when there is none; ``BaselineError`` when it is unusable."""
    payload = load_json(path, "memory")
    if payload is None:
        return None

    def fail(where: str, problem: str) -> BaselineError:
        return BaselineError(
            f"{path}: field {where}: {problem}; fix the field, or delete the file and re-record "
            f"it with {rerecord_hint('memory')}"
        )

    if not isinstance(payload, dict):
        raise fail("(top level)", "expected an object")
    if payload.get("schema") != SCHEMA:
        raise fail("schema", f"is {payload.get('schema')!r}, this medgate reads schema {SCHEMA}")
    model, headroom, cases = payload.get("model"), payload.get("headroom"), payload.get("cases")
    if not isinstance(model, str):
        raise fail("model", f"expected a string, found {model!r}")
    if isinstance(headroom, bool) or not isinstance(headroom, int | float) or headroom < 0:
        raise fail("headroom", f"expected a fraction >= 0 (0.1 is +10 %), found {headroom!r}")
    if not isinstance(cases, dict):
        raise fail("cases", "expected an object of case -> figures")
    depends_on = payload.get("depends_on", {})
    baseline = MemoryBaseline(
        model, float(headroom), depends_on if isinstance(depends_on, dict) else {}
    )
    for case, figures in cases.items():
        if not isinstance(figures, dict):
            raise fail(f"cases.{case}", "expected an object of figure -> ceiling")
        baseline.cases[case] = {}
        for figure, raw in figures.items():
            where = f"cases.{case}.{figure}"
            if figure not in FIGURES:
                raise fail(where, f"unknown figure (known: {', '.join(FIGURES)})")
            if not isinstance(raw, dict):
                raise fail(where, "expected {measured_bytes, ceiling_bytes}")
            for key in ("measured_bytes", "ceiling_bytes"):
                value = raw.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise fail(
                        f"{where}.{key}",
                        f"expected a positive whole number of bytes, found {value!r}",
                    )
            baseline.cases[case][figure] = Ceiling(raw["measured_bytes"], raw["ceiling_bytes"])
    return baseline
