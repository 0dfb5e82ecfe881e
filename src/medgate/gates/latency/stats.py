"""Is the current timing of a case slower than its baseline? Three answers, not two.

As Chromium's Pinpoint does, two samples of round times are compared with the Mann-Whitney U
and the Kolmogorov-Smirnov tests (the smaller p-value counts), and the size of the change is the
ratio of medians with a bootstrap confidence interval. A case is

- ``regressed`` when the change is significant and the whole interval lies beyond the tolerance,
- ``same`` when the whole interval lies within it (a significant 3 % drift is still ``same``),
- ``unsure`` otherwise: the gate measures more rounds and asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medgate.core.verdict import Verdict

#: Bootstrap resamples of the ratio of medians; the seed is fixed so a verdict is repeatable.
RESAMPLES = 2000
SEED = 0


def percentile(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def noise(samples: Sequence[float]) -> float:
    """Interquartile range over median: the spread of the rounds, whatever their unit."""
    values = np.asarray(samples, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / median) if median > 0 else float("inf")


def median_ratio_ci(
    baseline: Sequence[float], current: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """``median(current) / median(baseline)`` and its percentile-bootstrap interval."""
    before = np.asarray(baseline, dtype=float)
    after = np.asarray(current, dtype=float)
    rng = np.random.default_rng(SEED)
    before_medians = np.median(rng.choice(before, size=(RESAMPLES, before.size)), axis=1)
    after_medians = np.median(rng.choice(after, size=(RESAMPLES, after.size)), axis=1)
    ratios = after_medians / before_medians
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(np.median(after) / np.median(before)), float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    ratio: float
    low: float
    high: float
    mann_whitney_p: float
    ks_p: float
    tolerance: float
    alpha: float

    @property
    def p_value(self) -> float:
        return min(self.mann_whitney_p, self.ks_p)

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def verdict(self) -> Verdict:
        limit = 1 + self.tolerance
        if self.high <= limit:
            return Verdict.SAME
        if self.significant and self.low > limit:
            return Verdict.REGRESSED
        return Verdict.TOO_NOISY

    @property
    def resolvable(self) -> bool:
        """Whether the interval is narrow enough to place the change against the tolerance:
        no wider than the tolerance on each side."""
        return self.high - self.low <= 2 * self.tolerance

    def decided(self) -> Verdict:
        """The verdict once no more rounds will be measured: a TOO NOISY case whose interval
        is narrow goes by its point estimate; a wide one stays TOO NOISY."""
        verdict = self.verdict
        if verdict != Verdict.TOO_NOISY or not self.resolvable:
            return verdict
        if self.significant and self.ratio > 1 + self.tolerance:
            return Verdict.REGRESSED
        return Verdict.SAME

    def describe(self) -> str:
        return (
            f"x{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"(MWU p={self.mann_whitney_p:.2g}, KS p={self.ks_p:.2g}, tolerance "
            f"{self.tolerance:.0%})"
        )


def compare(
    baseline: Sequence[float],
    current: Sequence[float],
    tolerance: float,
    alpha: float = 0.05,
) -> Comparison:
    if len(baseline) < 2 or len(current) < 2:
        raise ValueError("a comparison needs at least two rounds on each side")
    # Imported here: scipy.stats takes about a second to import (see the accuracy gate's paired).
    from scipy import stats

    ratio, low, high = median_ratio_ci(baseline, current)
    mann_whitney = stats.mannwhitneyu(current, baseline, alternative="two-sided")
    ks = stats.ks_2samp(current, baseline)
    return Comparison(
        ratio=ratio,
        low=low,
        high=high,
        mann_whitney_p=float(mann_whitney.pvalue),
        ks_p=float(ks.pvalue),
        tolerance=tolerance,
        alpha=alpha,
    )
