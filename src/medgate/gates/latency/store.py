"""Stored round times: ``baselines/latency/<fingerprint id>/<model>.json``, one reviewed file per
machine and model.

Every measurement keeps its raw rounds (microseconds, one line per series, so a diff stays
readable) beside the reference workload's rounds of the same run: comparisons are between
samples, never between two medians, and a baseline from another machine can still be compared
in units of that machine's reference workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medgate.core.fingerprint import Fingerprint
from medgate.core.store import Fields, Store
from medgate.gates.latency.reference_workload import VERSION as REFERENCE_VERSION
from medgate.gates.latency.sampling import Rounds

SCHEMA = 1
LANE = "latency"


def latency_dir(baseline_dir: Path) -> Path:
    return baseline_dir / "latency"


def latency_path(baseline_dir: Path, fingerprint_id: str, model: str) -> Path:
    return latency_dir(baseline_dir) / fingerprint_id / f"{model}.json"


@dataclass
class LatencyBaseline:
    model: str
    fingerprint: Fingerprint
    measurements: dict[str, Rounds]


def _encode(seconds: tuple[float, ...]) -> str:
    return " ".join(f"{value * 1e6:.1f}" for value in seconds)


class LatencyStore(Store[LatencyBaseline]):
    lane = LANE
    schema = SCHEMA

    def dump(self, value: LatencyBaseline) -> dict[str, Any]:
        return {
            "model": value.model,
            "fingerprint": dict(value.fingerprint.facts),
            "reference_workload": REFERENCE_VERSION,
            "measurements": {
                key: {
                    "reference_us": _encode(rounds.reference),
                    "series_us": {name: _encode(values) for name, values in rounds.series.items()},
                }
                for key, rounds in value.measurements.items()
            },
        }

    def parse(self, payload: dict[str, Any], fields: Fields, schema: int) -> LatencyBaseline:
        if payload.get("reference_workload") != REFERENCE_VERSION:
            raise fields.fail(
                "reference_workload",
                f"recorded with version {payload.get('reference_workload')!r} of the reference "
                f"workload, this medgate runs {REFERENCE_VERSION}; its normalized times do not "
                "compare",
            )
        model = fields.text(payload, "model", "(top level)")
        fingerprint = fields.mapping(payload.get("fingerprint"), "fingerprint")
        measurements: dict[str, Rounds] = {}
        for key, raw in fields.mapping(payload.get("measurements"), "measurements").items():
            where = f"measurements.{key}"
            entry = fields.mapping(raw, where)
            series_us = fields.mapping(entry.get("series_us"), f"{where}.series_us")
            reference = _decode(fields, f"{where}.reference_us", entry.get("reference_us"))
            series = {
                name: _decode(fields, f"{where}.series_us.{name}", text)
                for name, text in series_us.items()
            }
            try:
                measurements[key] = Rounds(MappingProxyType(series), reference)
            except ValueError as error:
                raise fields.fail(where, str(error)) from error
        return LatencyBaseline(model, Fingerprint(fingerprint), measurements)


def _decode(fields: Fields, where: str, text: Any) -> tuple[float, ...]:
    if not isinstance(text, str):
        raise fields.fail(where, "expected a string of microseconds")
    try:
        values = tuple(float(item) / 1e6 for item in text.split())
    except ValueError as error:
        raise fields.fail(where, str(error)) from error
    if len(values) < 2 or not all(math.isfinite(value) and value > 0 for value in values):
        raise fields.fail(where, "needs two or more finite, positive round times")
    return values


STORE = LatencyStore()
to_json = STORE.dumps
write_latency_baseline = STORE.write
read_latency_baseline = STORE.read


def recorded_machines(baseline_dir: Path, model: str) -> list[str]:
    """Fingerprint ids that hold a baseline of ``model``."""
    root = latency_dir(baseline_dir)
    if not root.is_dir():
        return []
    return sorted(path.parent.name for path in root.glob(f"*/{model}.json"))
