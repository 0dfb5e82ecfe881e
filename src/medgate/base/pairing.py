"""Paired, interleaved latency: blocks of rounds of the base and of the head alternate in a
random order; each pair's ratio (head median over base median) cancels the machine's drift,
which moves both blocks of a pair alike. The verdict comes from the pairs whose two blocks ran
on an equally loaded machine: the median pair ratio, its bootstrap interval and a Wilcoxon
signed-rank test."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medgate.base.interference import Disturbance
from medgate.core.verdict import Verdict

#: Bootstrap resamples of the median pair ratio; the seed is fixed so a verdict is repeatable.
RESAMPLES = 4000
SEED = 0


@dataclass(frozen=True)
class Block:
    seconds: tuple[float, ...]
    disturbance: Disturbance

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class Pair:
    base: Block
    head: Block
    head_first: bool

    @property
    def ratio(self) -> float:
        return self.head.median / self.base.median

    @property
    def disturbed(self) -> bool:
        """The machine's load changed between the two blocks: the ratio is not a fair one."""
        return self.base.disturbance.differs_from(self.head.disturbance)

    @property
    def loaded(self) -> bool:
        """Both blocks ran beside other work: a fair ratio, but a noisier one."""
        return self.base.disturbance.disturbed and self.head.disturbance.disturbed


@dataclass(frozen=True)
class PairedComparison:
    """``ratio`` > 1: the head is slower. Computed over the undisturbed pairs only."""

    ratio: float
    low: float
    high: float
    p_value: float
    pairs: int
    clean: int
    tolerance: float
    alpha: float
    min_pairs: int
    #: Undisturbed pairs whose two blocks both ran beside other work.
    loaded: int = 0

    @property
    def mostly_loaded(self) -> bool:
        """Load beside both blocks dilutes a slowdown (both wait alike): a loaded machine can
        show a regression, but its "same" is not trusted."""
        return 2 * self.loaded > self.clean

    @property
    def verdict(self) -> Verdict:
        """Decided now, or TOO NOISY while more pairs may still decide it."""
        if self.clean < self.min_pairs:
            return Verdict.TOO_NOISY
        limit = 1 + self.tolerance
        if self.low > limit and self.p_value < self.alpha:
            return Verdict.REGRESSED
        if self.high <= limit and not self.mostly_loaded:
            return Verdict.SAME
        return Verdict.TOO_NOISY

    def decided(self) -> Verdict:
        """The verdict once no more pairs will be taken: an interval no wider than the
        tolerance on each side goes by its point estimate; a wider one stays TOO NOISY."""
        verdict = self.verdict
        if verdict != Verdict.TOO_NOISY or self.clean < self.min_pairs:
            return verdict
        if self.high - self.low > 2 * self.tolerance:
            return Verdict.TOO_NOISY
        if self.ratio > 1 + self.tolerance and self.p_value < self.alpha:
            return Verdict.REGRESSED
        return Verdict.TOO_NOISY if self.mostly_loaded else Verdict.SAME

    @property
    def confirms_regression(self) -> bool:
        """As a second read of a case the first read called REGRESSED: slower beyond the
        tolerance by its point estimate, and significantly slower at all."""
        return (
            self.clean >= self.min_pairs
            and self.ratio > 1 + self.tolerance
            and self.p_value < self.alpha
        )

    def describe(self) -> str:
        return (
            f"head/base x{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}] over {self.clean} "
            f"undisturbed of {self.pairs} pairs (Wilcoxon p={self.p_value:.2g}, tolerance "
            f"{self.tolerance:.0%})"
        )


def compare_pairs(
    pairs: Sequence[Pair],
    tolerance: float,
    alpha: float = 0.05,
    min_pairs: int = 8,
    confidence: float = 0.95,
) -> PairedComparison:
    clean = [pair.ratio for pair in pairs if not pair.disturbed]
    loaded = sum(pair.loaded for pair in pairs if not pair.disturbed)
    if len(clean) < 2:
        return PairedComparison(
            math.nan,
            math.nan,
            math.nan,
            1.0,
            len(pairs),
            len(clean),
            tolerance,
            alpha,
            min_pairs,
            loaded,
        )
    # Imported here: scipy.stats takes about a second to import.
    from scipy import stats

    logs = np.log(np.asarray(clean, dtype=float))
    rng = np.random.default_rng(SEED)
    medians = np.median(rng.choice(logs, size=(RESAMPLES, logs.size)), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.exp(np.percentile(medians, [tail, 100 - tail]))
    p_value = 1.0 if np.all(logs == 0) else float(stats.wilcoxon(logs).pvalue)
    return PairedComparison(
        ratio=float(np.exp(np.median(logs))),
        low=float(low),
        high=float(high),
        p_value=p_value,
        pairs=len(pairs),
        clean=len(clean),
        tolerance=tolerance,
        alpha=alpha,
        min_pairs=min_pairs,
        loaded=loaded,
    )
