"""Stored memory ceilings: one reviewed JSON file per model, ``baselines/memory/<model>.json``.

Per case and figure (``inference``: one batch through a prepared session; ``session``: building
the session, export and quantization included; ``cuda_peak``: ``torch.cuda.max_memory_allocated``
over one batch) the file keeps the measured bytes and the ceiling the gate holds the case to:
measured x (1 + headroom), written only on ``--update-baselines``, atomically, sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgate.core.store import Fields, Store

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


class MemoryStore(Store[MemoryBaseline]):
    lane = "memory"
    schema = SCHEMA

    def dump(self, value: MemoryBaseline) -> dict[str, Any]:
        return {
            "model": value.model,
            "headroom": value.headroom,
            "depends_on": value.depends_on,
            "cases": {
                case: {figure: vars(ceiling) for figure, ceiling in figures.items()}
                for case, figures in value.cases.items()
            },
        }

    def parse(self, payload: dict[str, Any], fields: Fields, schema: int) -> MemoryBaseline:
        model, headroom = fields.text(payload, "model", "(top level)"), payload.get("headroom")
        if isinstance(headroom, bool) or not isinstance(headroom, int | float) or headroom < 0:
            raise fields.fail(
                "headroom", f"expected a fraction >= 0 (0.1 is +10 %), found {headroom!r}"
            )
        cases = fields.mapping(payload.get("cases"), "cases")
        depends_on = payload.get("depends_on", {})
        baseline = MemoryBaseline(
            model, float(headroom), depends_on if isinstance(depends_on, dict) else {}
        )
        for case, raw_figures in cases.items():
            figures = fields.mapping(raw_figures, f"cases.{case}")
            baseline.cases[case] = {}
            for figure, raw in figures.items():
                where = f"cases.{case}.{figure}"
                if figure not in FIGURES:
                    raise fields.fail(where, f"unknown figure (known: {', '.join(FIGURES)})")
                entry = fields.mapping(raw, where)
                for key in ("measured_bytes", "ceiling_bytes"):
                    value = entry.get(key)
                    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                        raise fields.fail(
                            f"{where}.{key}",
                            f"expected a positive whole number of bytes, found {value!r}",
                        )
                baseline.cases[case][figure] = Ceiling(
                    entry["measured_bytes"], entry["ceiling_bytes"]
                )
        return baseline


STORE = MemoryStore()
to_json = STORE.dumps
write_memory_baseline = STORE.write
read_memory_baseline = STORE.read
