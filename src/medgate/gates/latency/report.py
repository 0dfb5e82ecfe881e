"""The latency gate's end-of-run tables: every timed series with its percentiles, noise and
verdict, and why cases were not compared."""

from __future__ import annotations

from collections.abc import Iterable

from tabulate import tabulate

from medgate.core.verdict import Verdict
from medgate.gates.latency.run import LatencyResult
from medgate.gates.latency.stats import noise, percentile

COLUMNS = (
    "case",
    "series",
    "rounds",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "noise",
    "vs baseline",
    "95% CI",
    "p",
    "machine",
    "basis",
    "verdict",
)


def latency_table(results: Iterable[LatencyResult]) -> str:
    rows = []
    for result in sorted(results, key=lambda r: r.key):
        compared = (
            {s.name: s for s in result.judgement.series} if result.judgement is not None else {}
        )
        rounds = f"{result.rounds.count}" + (
            f" ({result.remeasures} re-measured)" if result.remeasures else ""
        )
        for name, seconds in result.rounds.series.items():
            series = compared.get(name)
            verdict = str(series.verdict if series is not None else result.status)
            if result.budget_failures and name == "model":
                verdict = f"{verdict}, {Verdict.BEYOND_LIMIT} (budget)"
            rows.append(
                [
                    result.key,
                    name,
                    rounds,
                    f"{percentile(seconds, 50) * 1e3:.3f}",
                    f"{percentile(seconds, 95) * 1e3:.3f}",
                    f"{percentile(seconds, 99) * 1e3:.3f}",
                    f"{noise(seconds):.1%}",
                    f"x{series.comparison.ratio:.3f}" if series else "",
                    f"[{series.comparison.low:.3f}, {series.comparison.high:.3f}]"
                    if series
                    else "",
                    f"{series.comparison.p_value:.2g}" if series else "",
                    f"x{result.judgement.machine.ratio:.2f}" if result.judgement else "",
                    result.judgement.basis if result.judgement is not None else "",
                    verdict,
                ]
            )
    table: str = tabulate(rows, headers=COLUMNS, tablefmt="github")
    return table


def latency_notes(results: Iterable[LatencyResult]) -> list[str]:
    """One line per distinct reason a case was not compared or was judged differently."""
    notes: dict[str, list[str]] = {}
    for result in results:
        if result.note:
            notes.setdefault(result.note, []).append(result.key)
        for failure in result.budget_failures:
            notes.setdefault(failure, []).append(result.key)
        if result.status == Verdict.TOO_NOISY:
            notes.setdefault(
                "too noisy to judge: the interval of the median ratio stayed wider than the "
                "tolerance after every re-measurement; quiet the machine or raise the tolerance",
                [],
            ).append(result.key)
    lines = []
    for note, keys in notes.items():
        shown = ", ".join(sorted(keys)[:3]) + (", ..." if len(keys) > 3 else "")
        lines.append(f"{note} [{len(keys)} case(s): {shown}]")
    return lines
