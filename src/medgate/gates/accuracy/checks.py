"""The accuracy gate: each case against the in-run fp32 reference, the stored baseline and the
model's floors. Each check is a small object returning ``Finding``s; the plugin collects every
finding of the run and reports them in one table at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medgate.core.policy import AccuracyPolicy, Floor
from medgate.core.verdict import Verdict
from medgate.gates.accuracy.metrics import PROPORTIONS, Evaluation
from medgate.gates.accuracy.paired import Interval, McNemar, bootstrap_delta
from medgate.gates.accuracy.store import CaseRecord, CheckpointIdentity, DatasetSection

REFERENCE = "vs fp32 reference"
BASELINE = "vs baseline"
BASE = "vs base"
FLOOR = "floor"

#: Drops are differences of counts over a few hundred images; a drop that equals the tolerance
#: must not fail on the last bit of a float subtraction.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Finding:
    gate: str
    metric: str
    now: float | None
    reference: float | None = None
    baseline: float | None = None
    interval: Interval | None = None
    p_value: float | None = None
    verdict: Verdict = Verdict.OK
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict.fails

    @property
    def delta(self) -> float | None:
        compared = self.reference if self.gate == REFERENCE else self.baseline
        if self.gate == FLOOR or compared is None or self.now is None:
            return None
        return self.now - compared


@dataclass(frozen=True)
class PairedDropCheck:
    """Fails when ``metric`` drops by more than ``tolerance`` and the drop is significant:
    exact McNemar for proportions, the paired bootstrap CI lying below zero otherwise. Without
    per-image scores (AUROC against a stored baseline) the tolerance alone decides."""

    metric: str
    tolerance: float
    significance: float

    def check(
        self, gate: str, reference: Evaluation, candidate: Evaluation, stored: float | None = None
    ) -> Finding:
        before = stored if stored is not None else reference.metric(self.metric)
        now = candidate.metric(self.metric)
        reference_value, baseline_value = (before, None) if gate == REFERENCE else (None, before)
        if before is None or now is None:
            return Finding(
                gate,
                self.metric,
                now,
                reference_value,
                baseline_value,
                verdict=Verdict.NOT_APPLICABLE,
            )
        drop = before - now
        # The CI is shown for every count metric (cheap); AUROC resamples only when it matters.
        interval = (
            bootstrap_delta(reference, candidate, self.metric)
            if self.metric in PROPORTIONS or drop > self.tolerance + _EPSILON
            else None
        )
        if drop <= self.tolerance + _EPSILON:
            return Finding(
                gate,
                self.metric,
                now,
                reference_value,
                baseline_value,
                interval=interval,
                verdict=Verdict.SAME,
            )
        p_value: float | None = None
        if self.metric in PROPORTIONS:
            test = McNemar.on(reference, candidate, self.metric)
            p_value = test.p_value
            significant = p_value < self.significance
            detail = f"{test.broken} lost, {test.fixed} gained"
        elif interval is not None:
            significant = interval.high < 0
            detail = "bootstrap CI below 0" if significant else "bootstrap CI spans 0"
        else:
            significant = True
            detail = "no per-image scores stored: tolerance alone"
        verdict = Verdict.REGRESSED if significant else Verdict.TOO_NOISY
        return Finding(
            gate,
            self.metric,
            now,
            reference_value,
            baseline_value,
            interval=interval,
            p_value=p_value,
            verdict=verdict,
            detail=f"drop {drop:.2%} > {self.tolerance:.2%}; {detail}",
        )


@dataclass(frozen=True)
class FloorCheck:
    floor: Floor

    def check(self, candidate: Evaluation) -> Finding:
        now = candidate.metric(self.floor.metric)
        below = now is None or now < self.floor.minimum
        return Finding(
            FLOOR,
            self.floor.metric,
            now,
            verdict=Verdict.BEYOND_LIMIT if below else Verdict.OK,
            detail=f">= {self.floor.minimum:.2%}" + (f" ({self.floor.reason})" if below else ""),
        )


@dataclass(frozen=True)
class RunIdentity:
    """What this run's figures depend on, to compare with a stored section's."""

    dataset_sha256: str
    checkpoint: CheckpointIdentity


def staleness(section: DatasetSection, record: CaseRecord, run: RunIdentity) -> str | None:
    """Why a stored case does not describe this run, or None.

    A checkpoint retrained by the same recipe (same key, kernel pin included) is not stale: it
    holds the same tensors wherever it was trained, and were it ever to differ, comparing its
    metrics is exactly how a retraining regression is caught. A different recipe, a user
    checkpoint or different data is stale.
    """
    if section.dataset.sha256 != run.dataset_sha256:
        return (
            f"dataset SHA-256 {run.dataset_sha256[:12]} differs from the baseline's "
            f"{section.dataset.sha256[:12]} ({section.dataset.source})"
        )
    stored, now = record.checkpoint, run.checkpoint
    if stored.tensors_sha256 == now.tensors_sha256:
        return None
    if stored.recipe_key is not None and stored.recipe_key == now.recipe_key:
        return None
    return (
        f"checkpoint tensors SHA-256 {now.tensors_sha256[:12]} differ from the baseline's "
        f"{stored.tensors_sha256[:12]}"
        + ("" if now.recipe_key is None else f" (recipe {now.recipe_key})")
    )


class AccuracyGate:
    """Applies one model's policy to its cases."""

    def __init__(self, policy: AccuracyPolicy) -> None:
        self.policy = policy
        self.drops = [
            PairedDropCheck(metric, tolerance, policy.significance)
            for metric, tolerance in policy.gated().items()
        ]

    def against_reference(self, reference: Evaluation, candidate: Evaluation) -> list[Finding]:
        return [check.check(REFERENCE, reference, candidate) for check in self.drops]

    def against_base(self, base: Evaluation, candidate: Evaluation) -> list[Finding]:
        """The same case on the base revision, measured in this run on its own test split."""
        if not np.array_equal(base.labels, candidate.labels):
            return [
                Finding(
                    BASE,
                    "-",
                    None,
                    verdict=Verdict.NOT_APPLICABLE,
                    detail="the base's test split holds other images: its predictions cannot "
                    "be paired; the floors and the fp32 reference still hold",
                )
            ]
        return [
            check.check(BASE, base, candidate, stored=base.metric(check.metric))
            for check in self.drops
        ]

    def against_baseline(
        self,
        record: CaseRecord | None,
        section: DatasetSection | None,
        run: RunIdentity,
        candidate: Evaluation,
        baseline_file: str,
    ) -> list[Finding]:
        fix = f"`pytest perf_tests -m accuracy --update-baselines`, then review {baseline_file}"
        if section is None or record is None:
            return [
                Finding(
                    BASELINE, "-", None, verdict=Verdict.NO_BASELINE, detail=f"record it: {fix}"
                )
            ]
        stale = staleness(section, record, run)
        if stale is not None:
            finding = Finding(
                BASELINE,
                "-",
                None,
                verdict=Verdict.STALE_BASELINE,
                detail=f"{stale}; if the change is intended, re-record: {fix}",
            )
            # Still compared: the reviewer sees what the change did to the metrics.
            return [finding, *self._compare(record, candidate)]
        if record.samples != candidate.samples:
            return [
                Finding(
                    BASELINE,
                    "-",
                    None,
                    verdict=Verdict.STALE_BASELINE,
                    detail=f"stored {record.samples} predictions, the split has "
                    f"{candidate.samples} images; re-record: {fix}",
                )
            ]
        return self._compare(record, candidate)

    def _compare(self, record: CaseRecord, candidate: Evaluation) -> list[Finding]:
        if record.samples != candidate.samples:
            return []
        stored = Evaluation(candidate.labels, record.prediction_array(), candidate.positive_index)
        return [
            check.check(BASELINE, stored, candidate, stored=record.metrics.get(check.metric))
            for check in self.drops
        ]

    def floors(self, dataset: str, case_glob_key: str, candidate: Evaluation) -> list[Finding]:
        return [
            FloorCheck(floor).check(candidate)
            for floor in self.policy.floors_for(dataset, case_glob_key)
        ]


def worst_drop(findings: list[Finding], gate: str) -> Finding | None:
    """The finding with the largest drop of ``gate`` (None when nothing was compared)."""
    drops = [f for f in findings if f.gate == gate and f.delta is not None and f.delta < 0]
    return min(drops, key=lambda f: f.delta if f.delta is not None else np.inf, default=None)
