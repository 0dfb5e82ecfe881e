"""Paired statistics on one test split: is the candidate worse than its reference, or lucky?

Both models score the same images, so the tests are paired: McNemar looks only at the samples on
which the two disagree, and the bootstrap resamples images, scoring both models on each resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medgate.gates.accuracy.metrics import PROPORTIONS, Evaluation

#: Resamples of the paired bootstrap; fixed seed, so a verdict never depends on the run.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261124


@dataclass(frozen=True)
class McNemar:
    """Exact one-sided McNemar: of the ``broken + fixed`` discordant samples, are significantly
    more broken (reference right, candidate wrong) than fixed?"""

    broken: int
    fixed: int
    p_value: float

    @classmethod
    def on(cls, reference: Evaluation, candidate: Evaluation, metric: str) -> McNemar:
        counted = reference.counted(metric)
        ref_ok = reference.correct(metric)[counted]
        now_ok = candidate.correct(metric)[counted]
        broken = int((ref_ok & ~now_ok).sum())
        fixed = int((~ref_ok & now_ok).sum())
        if broken + fixed == 0:
            return cls(0, 0, 1.0)
        # Imported here: scipy.stats takes about a second to import, which every pytest process
        # loading the plugin would otherwise pay.
        from scipy.stats import binomtest

        p_value = binomtest(broken, broken + fixed, 0.5, alternative="greater").pvalue
        return cls(broken, fixed, float(p_value))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap_delta(
    reference: Evaluation,
    candidate: Evaluation,
    metric: str,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
) -> Interval | None:
    """Percentile CI of ``candidate - reference`` for ``metric`` over paired resamples.

    None where the metric cannot be computed on the samples (AUROC without scores).
    """
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    index = rng.integers(0, reference.samples, size=(resamples, reference.samples))
    deltas: np.ndarray | None
    if metric in PROPORTIONS:
        deltas = _proportion_deltas(reference, candidate, metric, index)
    else:
        deltas = _resampled_deltas(reference, candidate, metric, index)
    if deltas is None or deltas.size == 0:
        return None
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return Interval(float(low), float(high))


def _proportion_deltas(
    reference: Evaluation, candidate: Evaluation, metric: str, index: np.ndarray
) -> np.ndarray:
    # Vectorized: a proportion on a resample is a ratio of two counts over the resampled rows.
    counted = reference.counted(metric)[index]
    ref_ok = reference.correct(metric)[index] & counted
    now_ok = candidate.correct(metric)[index] & counted
    totals = counted.sum(axis=1)
    keep = totals > 0
    deltas: np.ndarray = (now_ok.sum(axis=1) - ref_ok.sum(axis=1))[keep] / totals[keep]
    return deltas


def _resampled_deltas(
    reference: Evaluation, candidate: Evaluation, metric: str, index: np.ndarray
) -> np.ndarray | None:
    deltas = []
    for rows in index:
        before, after = reference.metric(metric, rows), candidate.metric(metric, rows)
        if before is None or after is None:
            if metric == "auroc" and (
                reference.positive_scores is None or candidate.positive_scores is None
            ):
                return None
            continue
        deltas.append(after - before)
    return np.asarray(deltas)
