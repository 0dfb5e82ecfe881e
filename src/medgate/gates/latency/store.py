"""Stored round times: ``baselines/latency/<fingerprint id>/<model>.json``, one reviewed file per
machine and model.

Every measurement keeps its raw rounds (microseconds, one line per series, so a diff stays
readable) beside the reference workload's rounds of the same run: comparisons are between
samples, never between two medians, and a baseline from another machine can still be compared
in units of that machine's reference workload.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medgate.core.files import BaselineError, atomic_write_bytes, load_json, rerecord_hint
from medgate.core.fingerprint import Fingerprint
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


def to_json(baseline: LatencyBaseline) -> str:
    payload = {
        "schema": SCHEMA,
        "model": baseline.model,
        "fingerprint": dict(baseline.fingerprint.facts),
        "reference_workload": REFERENCE_VERSION,
        "measurements": {
            key: {
                "reference_us": _encode(rounds.reference),
                "series_us": {name: _encode(values) for name, values in rounds.series.items()},
            }
            for key, rounds in baseline.measurements.items()
        },
    }
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def write_latency_baseline(path: Path, baseline: LatencyBaseline) -> None:
    atomic_write_bytes(path, to_json(baseline).encode())


def _decode(path: Path, where: str, text: Any) -> tuple[float, ...]:
    fix = f"re-record it with {rerecord_hint(LANE)}"
    if not isinstance(text, str):
        raise BaselineError(f"{path}: {where}: expected a string of microseconds; {fix}")
    try:
        values = tuple(float(item) / 1e6 for item in text.split())
    except ValueError as error:
        raise BaselineError(f"{path}: {where}: {error}; {fix}") from error
    if len(values) < 2 or not all(math.isfinite(value) and value > 0 for value in values):
        raise BaselineError(
            f"{path}: {where}: needs two or more finite, positive round times; {fix}"
        )
    return values


def read_latency_baseline(path: Path) -> LatencyBaseline | None:
    payload = load_json(path, LANE)
    if payload is None:
        return None
    fix = f"re-record it with {rerecord_hint(LANE)}"
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        found = payload.get("schema") if isinstance(payload, dict) else None
        raise BaselineError(f"{path}: schema: expected {SCHEMA}, found {found!r}; {fix}")
    if payload.get("reference_workload") != REFERENCE_VERSION:
        raise BaselineError(
            f"{path}: reference_workload: recorded with version "
            f"{payload.get('reference_workload')!r} of the reference workload, this medgate "
            f"runs {REFERENCE_VERSION}; its normalized times do not compare; {fix}"
        )
    for field_name, kind in (("model", str), ("fingerprint", dict), ("measurements", dict)):
        if not isinstance(payload.get(field_name), kind):
            raise BaselineError(f"{path}: {field_name}: expected a {kind.__name__}; {fix}")
    measurements: dict[str, Rounds] = {}
    for key, entry in payload["measurements"].items():
        where = f"measurements.{key}"
        if not isinstance(entry, dict) or not isinstance(entry.get("series_us"), dict):
            raise BaselineError(f"{path}: {where}.series_us: expected an object; {fix}")
        reference = _decode(path, f"{where}.reference_us", entry.get("reference_us"))
        series = {
            name: _decode(path, f"{where}.series_us.{name}", text)
            for name, text in entry["series_us"].items()
        }
        try:
            measurements[key] = Rounds(MappingProxyType(series), reference)
        except ValueError as error:
            raise BaselineError(f"{path}: {where}: {error}; {fix}") from error
    return LatencyBaseline(payload["model"], Fingerprint(payload["fingerprint"]), measurements)


def recorded_machines(baseline_dir: Path, model: str) -> list[str]:
    """Fingerprint ids that hold a baseline of ``model``."""
    root = latency_dir(baseline_dir)
    if not root.is_dir():
        return []
    return sorted(path.parent.name for path in root.glob(f"*/{model}.json"))
