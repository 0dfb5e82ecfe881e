"""Absolute latency budgets (SLOs), apart from regression: ``<baseline dir>/budgets.toml``.

A regression compares a case with its own past; a budget is what the product needs ("pneumonia
on CUDA, batch 1, under 3 ms"), whatever the past was. One reviewed file holds them all::

    [[budget]]
    name = "pneumonia screen on a GPU, one image"
    models = "pneumonia_resnet18*"
    device = "cuda-*"          # device class: cpu-<N>core or cuda-<gpu model>
    batch = 1
    statistic = "p95"          # p50, p95 or p99 of the case's rounds
    max_ms = 3.0               # or min_samples_per_s = 2000 (batch / statistic)

``models``, ``backends``, ``precisions`` and ``device`` are globs (default ``*``); ``input_sizes``
and ``batch`` narrow further when given. A case over any budget that matches it fails, naming it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from medgate.core.files import BaselineError
from medgate.core.matrix import Case
from medgate.gates.latency.stats import percentile

STATISTICS = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
FIELDS = (
    "name",
    "models",
    "backends",
    "precisions",
    "device",
    "input_sizes",
    "batch",
    "statistic",
    "max_ms",
    "min_samples_per_s",
    "reason",
)


@dataclass(frozen=True)
class Budget:
    name: str
    models: str = "*"
    backends: str = "*"
    precisions: str = "*"
    device: str = "*"
    input_sizes: tuple[int, ...] = ()
    batch: int | None = None
    statistic: str = "p50"
    max_ms: float | None = None
    min_samples_per_s: float | None = None
    reason: str = ""

    def matches(self, case: Case, device_class: str) -> bool:
        return (
            fnmatchcase(case.model, self.models)
            and fnmatchcase(case.backend, self.backends)
            and fnmatchcase(case.precision, self.precisions)
            and fnmatchcase(device_class, self.device)
            and (not self.input_sizes or case.input_size in self.input_sizes)
            and (self.batch is None or case.batch == self.batch)
        )

    def exceeded(self, case: Case, seconds: Sequence[float]) -> str | None:
        """Why ``case`` with these round times is over this budget, or None."""
        value = percentile(seconds, STATISTICS[self.statistic])
        if self.max_ms is not None and value * 1e3 > self.max_ms:
            return (
                f"over budget {self.name!r}: {self.statistic} {value * 1e3:.3f} ms > "
                f"{self.max_ms:g} ms"
            )
        throughput = case.batch / value
        if self.min_samples_per_s is not None and throughput < self.min_samples_per_s:
            return (
                f"under budget {self.name!r}: {throughput:.0f} samples/s at the "
                f"{self.statistic} < {self.min_samples_per_s:g} samples/s"
            )
        return None


def _checked(path: Path, index: int, entry: Any) -> Budget:
    where = f"{path}: budget[{index}]"
    if not isinstance(entry, dict):
        raise BaselineError(f"{where}: expected a [[budget]] table")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise BaselineError(f"{where}: unknown field(s) {unknown}; known: {', '.join(FIELDS)}")
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise BaselineError(f"{where}.name: give each budget a name, the failure message uses it")
    for glob in ("models", "backends", "precisions", "device", "reason"):
        if glob in entry and not isinstance(entry[glob], str):
            raise BaselineError(f"{where}.{glob}: expected a string")
    statistic = entry.get("statistic", "p50")
    if not isinstance(statistic, str) or statistic not in STATISTICS:
        raise BaselineError(f"{where}.statistic: choose one of {', '.join(STATISTICS)}")
    limits = [key for key in ("max_ms", "min_samples_per_s") if key in entry]
    if len(limits) != 1:
        raise BaselineError(f"{where}: give exactly one of max_ms, min_samples_per_s")
    limit = entry[limits[0]]
    # NaN fails every comparison, so a NaN limit would never fire: finite is part of valid.
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int | float)
        or not math.isfinite(limit)
        or limit <= 0
    ):
        raise BaselineError(f"{where}.{limits[0]}: expected a finite number > 0, got {limit!r}")
    sizes = entry.get("input_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise BaselineError(f"{where}.input_sizes: expected a list of pixel sizes, e.g. [224]")
    batch = entry.get("batch")
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise BaselineError(f"{where}.batch: expected a positive whole number")
    return Budget(**{**entry, "input_sizes": tuple(sizes)})


def load_budgets(path: Path) -> tuple[Budget, ...]:
    if not path.exists():
        return ()
    try:
        payload = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise BaselineError(f"{path}: not readable TOML ({error}); fix the line named") from error
    entries = payload.get("budget", [])
    if set(payload) - {"budget"} or not isinstance(entries, list):
        raise BaselineError(f"{path}: expected only [[budget]] tables, found {sorted(payload)}")
    return tuple(_checked(path, index, entry) for index, entry in enumerate(entries))
