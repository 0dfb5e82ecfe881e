"""The end-of-run accuracy tables: every case's metrics, then every finding that needs a look."""

from __future__ import annotations

from tabulate import tabulate

from medgate.core.matrix import Case
from medgate.core.verdict import Verdict, worst
from medgate.gates.accuracy.checks import REFERENCE, Finding, worst_drop
from medgate.gates.accuracy.run import CaseAccuracy

#: Findings that need no look: a held floor, a comparison within tolerance, nothing to compare.
QUIET = frozenset({Verdict.OK, Verdict.SAME, Verdict.NOT_APPLICABLE, Verdict.NO_BASELINE})


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _metric(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if name == "auroc" else f"{value:.1%}"


def _delta(finding: Finding) -> str:
    delta = finding.delta
    if delta is None:
        return "-"
    return f"{delta:+.3f}" if finding.metric == "auroc" else f"{delta * 100:+.1f} pp"


def _verdict(result: CaseAccuracy) -> str:
    return str(worst({finding.verdict for finding in result.findings}))


def missing_baselines(results: dict[Case, CaseAccuracy]) -> dict[str, list[Case]]:
    """Per model, the cases that have no stored baseline yet (one line each, not one row)."""
    missing: dict[str, list[Case]] = {}
    for case, result in sorted(results.items()):
        if any(finding.verdict == Verdict.NO_BASELINE for finding in result.findings):
            missing.setdefault(case.model, []).append(case)
    return missing


def accuracy_tables(results: dict[Case, CaseAccuracy]) -> tuple[str, str]:
    """(one row per case, one row per finding that is not plainly ok or a missing baseline)."""
    case_rows = []
    finding_rows = []
    for case, result in sorted(results.items()):
        metrics = result.metrics
        worst = worst_drop(result.findings, REFERENCE)
        flips = result.flips
        case_rows.append(
            [
                case.id,
                result.dataset,
                _percent(metrics["accuracy"]),
                _percent(metrics["sensitivity"]),
                _percent(metrics["specificity"]),
                _metric("auroc", metrics["auroc"]),
                "ref" if flips is None else f"{flips.agreement:.1%}",
                "-" if flips is None else f"{flips.broken}/{flips.fixed}",
                ("-" if flips is None else "none")
                if worst is None
                else f"{worst.metric} {_delta(worst)}",
                _verdict(result),
            ]
        )
        for finding in result.findings:
            if finding.verdict in QUIET:
                continue
            interval = finding.interval
            finding_rows.append(
                [
                    case.id,
                    finding.gate,
                    finding.metric,
                    _metric(finding.metric, finding.reference),
                    _metric(finding.metric, finding.baseline),
                    _metric(finding.metric, finding.now),
                    _delta(finding),
                    "-"
                    if interval is None
                    else f"[{interval.low * 100:+.1f}, {interval.high * 100:+.1f}] pp"
                    if finding.metric != "auroc"
                    else f"[{interval.low:+.3f}, {interval.high:+.3f}]",
                    "-" if finding.p_value is None else f"{finding.p_value:.3g}",
                    str(finding.verdict),
                    finding.detail,
                ]
            )
    cases = tabulate(
        case_rows,
        headers=[
            "case",
            "dataset",
            "accuracy",
            "sensitivity",
            "specificity",
            "AUROC",
            "top-1 agreement",
            "lost/gained",
            "worst drop vs fp32",
            "verdict",
        ],
        disable_numparse=True,
    )
    findings = (
        tabulate(
            finding_rows,
            headers=[
                "case",
                "gate",
                "metric",
                "reference",
                "baseline",
                "now",
                "delta",
                "95% CI",
                "p",
                "verdict",
                "detail",
            ],
            disable_numparse=True,
        )
        if finding_rows
        else ""
    )
    return cases, findings
