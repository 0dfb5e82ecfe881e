"""Per-model policies of the gates: how much accuracy a model may lose to an optimization and
the floors it may never go below, how much slower it may get, and where its logits may sit
further from eager fp32's than its precision allows.

Plain data for ``ModelSpec.accuracy``, ``.latency`` and ``.agreement``; the gates that apply
them are ``medgate.gates.accuracy.checks``, ``medgate.gates.latency`` and
``medgate.gates.agreement.check``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

#: Largest drop against a reference (the in-run fp32 model, or the stored baseline) that passes
#: without question. Specificity gets more room than sensitivity: in a screen a false positive
#: costs a second read, a false negative a missed diagnosis.
DEFAULT_TOLERANCES: tuple[tuple[str, float], ...] = (
    ("accuracy", 0.01),
    ("sensitivity", 0.01),
    ("specificity", 0.02),
    ("auroc", 0.01),
)

#: One-sided level of the paired tests: a drop beyond tolerance fails only when this unlikely
#: under "the candidate is as good as its reference".
DEFAULT_SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Floor:
    """An absolute minimum for ``metric`` on the datasets matching ``dataset`` (a glob over
    dataset names: a bundled recipe's name, or the stem of the user's file), for the cases
    matching ``cases`` (a glob over ``backend-precision-size``, e.g. ``*-64`` for the size the
    model was trained at)."""

    metric: str
    minimum: float
    dataset: str = "*"
    cases: str = "*"
    reason: str = ""

    def applies_to(self, dataset: str, case: str) -> bool:
        return fnmatch.fnmatchcase(dataset, self.dataset) and fnmatch.fnmatchcase(case, self.cases)


@dataclass(frozen=True)
class AccuracyPolicy:
    """``tolerances`` override ``DEFAULT_TOLERANCES`` per metric (a metric given ``None`` is
    reported but not gated)."""

    tolerances: tuple[tuple[str, float | None], ...] = ()
    floors: tuple[Floor, ...] = ()
    significance: float = DEFAULT_SIGNIFICANCE

    def gated(self) -> dict[str, float]:
        merged: dict[str, float | None] = {**dict(DEFAULT_TOLERANCES), **dict(self.tolerances)}
        return {metric: tol for metric, tol in merged.items() if tol is not None}

    def floors_for(self, dataset: str, case: str) -> list[Floor]:
        return [floor for floor in self.floors if floor.applies_to(dataset, case)]


@dataclass(frozen=True)
class LatencyPolicy:
    """How much slower than its baseline a case of this model may get before it regresses.

    ``tolerance`` None takes the run's ``--latency-tolerance`` (ini ``medgate_latency_tolerance``,
    10 % by default). ``overrides`` are ``(glob over backend-precision-size, tolerance)`` pairs;
    the first match wins, e.g. ``(("onnxruntime-int8-dynamic-*", 0.25),)`` for a case whose
    ConvInteger kernels are known to swing with the cache state.
    """

    tolerance: float | None = None
    overrides: tuple[tuple[str, float], ...] = ()

    def tolerance_for(self, backend: str, precision: str, size: int, default: float) -> float:
        for cases, tolerance in self.overrides:
            if fnmatch.fnmatchcase(f"{backend}-{precision}-{size}", cases):
                return tolerance
        return self.tolerance if self.tolerance is not None else default


@dataclass(frozen=True)
class LogitTolerance:
    """A wider max |delta logit| (relative, as ``medgate.core.precision.Precision``) than the
    precision's own, for the cases matching ``cases`` (a glob over ``backend-precision-size``)
    on ``device`` (a glob), for ``reason``: a network whose rounding at that precision sits at
    the precision's limit, where passing or failing would depend on the backend's kernels. Top-1
    agreement keeps the precision's minimum; unlike a known disagreement, the case stays gated
    at the wider limit."""

    cases: str
    max_logit_delta: float
    reason: str
    device: str = "*"

    def applies_to(self, case: str, device: str) -> bool:
        return fnmatch.fnmatchcase(case, self.cases) and fnmatch.fnmatchcase(device, self.device)


@dataclass(frozen=True)
class AgreementPolicy:
    """``logit_tolerances``: the first one matching a case replaces its precision's max
    |delta logit|; a case matching none keeps the precision's."""

    logit_tolerances: tuple[LogitTolerance, ...] = ()

    def max_logit_delta_for(self, case: str, device: str, default: float) -> float:
        for tolerance in self.logit_tolerances:
            if tolerance.applies_to(case, device):
                return tolerance.max_logit_delta
        return default
