"""The end-of-run tables of a run against the base revision."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from tabulate import tabulate

from medgate.base.run import BaseRun, LatencyVsBase
from medgate.core.verdict import Verdict


def _latency_row(result: LatencyVsBase) -> list[str]:
    comparison = result.comparison
    base = statistics.median(pair.base.median for pair in result.pairs)
    head = statistics.median(pair.head.median for pair in result.pairs)
    return [
        result.case.id,
        f"{len(result.pairs)} ({result.disturbed} disturbed, {result.loaded} loaded)",
        str(result.rounds_per_block),
        f"{base * 1e3:.3f}",
        f"{head * 1e3:.3f}",
        "-" if math.isnan(comparison.ratio) else f"x{comparison.ratio:.3f}",
        "-" if math.isnan(comparison.low) else f"[{comparison.low:.3f}, {comparison.high:.3f}]",
        "-" if math.isnan(comparison.ratio) else f"{comparison.p_value:.2g}",
        f"{comparison.tolerance:.0%}",
        str(result.verdict) + _confirmation(result),
    ]


def _confirmation(result: LatencyVsBase) -> str:
    """A first REGRESSED read is re-measured in fresh processes: what they read."""
    again = result.confirmation
    if again is None or math.isnan(again.ratio):
        return ""
    confirmed = "confirmed" if result.verdict == Verdict.REGRESSED else "not confirmed"
    return f" ({confirmed} in fresh processes: x{again.ratio:.3f})"


def latency_vs_base_table(results: Iterable[LatencyVsBase]) -> str:
    rows = [_latency_row(result) for result in sorted(results, key=lambda r: r.case.id)]
    headers = [
        "case",
        "pairs",
        "rounds/block",
        "base p50 ms",
        "head p50 ms",
        "head/base",
        "95% CI",
        "Wilcoxon p",
        "tolerance",
        "verdict",
    ]
    table: str = tabulate(rows, headers=headers, tablefmt="github")
    return table


def memory_vs_base_table(run: BaseRun) -> str:
    rows = [
        [
            case.id,
            f"{result.base_bytes / 2**20:.2f}",
            f"{result.head_bytes / 2**20:.2f}",
            f"x{result.ratio:.3f}",
            str(result.verdict),
        ]
        for case, result in sorted(run.memory.items())
    ]
    headers = ["case", "base MiB", "head MiB", "head/base", "verdict"]
    table: str = tabulate(rows, headers=headers, tablefmt="github")
    return table


def identity_lines(run: BaseRun) -> list[str]:
    lines = []
    for model, identity in sorted(run.identities.items()):
        if identity.identical and run.config.base_identical == "skip":
            lines.append(f"{model}: identical to base (not measured)")
        elif identity.identical:
            lines.append(f"{model}: identical to base, measured (--medgate-base-identical)")
        else:
            lines.append(
                f"{model}: measured on both sides; differs in {', '.join(identity.differs)}"
            )
    return lines
