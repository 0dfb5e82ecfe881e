"""One run's ``results.json`` document, gathered from every gate of the workspace.

Two parts: ``cases`` (what each case measured: latency percentiles, throughput, roofline
efficiency, energy, accuracy metrics, memory) and ``measurements`` (one row per judged figure:
its reference, the figure now, the change, the interval, the verdict, why, and what to do).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from medgate.base.run import BaseRun, LatencyVsBase, MemoryVsBase
from medgate.core.energy import PowerModel
from medgate.core.machine import library_versions
from medgate.core.matrix import Case
from medgate.core.peaks import Peaks
from medgate.core.precision import PRECISIONS
from medgate.core.registry import get_spec
from medgate.core.verdict import Verdict
from medgate.gates.accuracy.checks import BASE, BASELINE, FLOOR, REFERENCE, Finding
from medgate.gates.agreement.check import tolerance_for
from medgate.gates.latency.run import LatencyResult
from medgate.gates.latency.stats import percentile
from medgate.gates.memory.run import MemoryFigure
from medgate.results.schema import SCHEMA_ID
from medgate.workspace import Workspace

#: Rounds kept per side of a latency row, for the distribution plots.
MAX_SAMPLES = 400


def _ms(seconds: Iterable[float]) -> list[float]:
    return [round(s * 1e3, 5) for s in list(seconds)[:MAX_SAMPLES]]


def case_entry(case: Case) -> dict[str, Any]:
    entry = {"id": case.id, **dataclasses.asdict(case)}
    weights_from = get_spec(case.model).weights_from
    if weights_from is not None:
        entry["weights_from"] = weights_from
    return entry


def _row(
    case: Case,
    gate: str,
    metric: str,
    unit: str,
    verdict: Verdict,
    now: float | None,
    reference: dict[str, Any] | None = None,
    delta: float | None = None,
    ci: tuple[float, float] | None = None,
    why: str = "",
    fix: str = "",
    samples: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case": case.id,
        "gate": gate,
        "metric": metric,
        "unit": unit,
        "reference": reference,
        "now": now,
        "delta": delta,
        "ci": list(ci) if ci is not None else None,
        "verdict": str(verdict),
        "why": why,
        "fix": fix,
    }
    if samples is not None:
        row["samples"] = samples
    return row


def latency_rows(workspace: Workspace) -> list[dict[str, Any]]:
    rows = []
    for result in workspace.latency.results.values():
        rows.append(_latency_row(workspace, result))
    return rows


def _latency_row(workspace: Workspace, result: LatencyResult) -> dict[str, Any]:
    case = result.case
    now = result.rounds.series.get("model") or next(iter(result.rounds.series.values()))
    metric = "p50" if result.key == case.id else f"p50 {result.key.removeprefix(case.id + ':')}"
    verdict = Verdict.BEYOND_LIMIT if result.budget_failures else result.status
    baseline, _ = workspace.latency.source(case.model)
    before = baseline.measurements.get(result.key) if baseline is not None else None
    series = next(
        (s for s in (result.judgement.series if result.judgement else ()) if s.name == "model"),
        None,
    )
    reference = None
    samples = {"now": _ms(now)}
    if before is not None and baseline is not None:
        old = before.series.get("model") or next(iter(before.series.values()))
        reference = {
            "kind": "baseline",
            "source": result.source,
            "value": percentile(old, 50) * 1e3,
        }
        samples["reference"] = _ms(old)
    why = "; ".join([*result.budget_failures, *([result.note] if result.note else [])])
    if series is not None:
        why = f"{series.comparison.describe()}{'; ' + why if why else ''}"
    return _row(
        case,
        "latency",
        metric,
        "ms",
        verdict,
        percentile(now, 50) * 1e3,
        reference,
        series.comparison.ratio if series is not None else None,
        (series.comparison.low, series.comparison.high) if series is not None else None,
        why,
        _fix("latency", verdict, case, reference),
        samples,
    )


def base_latency_rows(base: BaseRun) -> list[dict[str, Any]]:
    return [_base_latency_row(base, result) for result in base.latency.values()]


def _base_latency_row(base: BaseRun, result: LatencyVsBase) -> dict[str, Any]:
    head = [s for pair in result.pairs for s in pair.head.seconds]
    before = [s for pair in result.pairs for s in pair.base.seconds]
    comparison = result.confirmation or result.comparison
    why = comparison.describe()
    if result.loaded:
        why += f"; {result.loaded} of {len(result.pairs)} pairs ran on a loaded machine"
    return _row(
        result.case,
        "latency",
        "p50",
        "ms",
        result.verdict,
        percentile(head, 50) * 1e3 if head else None,
        {
            "kind": "base",
            "source": base.base.label,
            "value": percentile(before, 50) * 1e3 if before else None,
        },
        comparison.ratio,
        (comparison.low, comparison.high),
        why,
        _fix("latency", result.verdict, result.case, {"kind": "base"}),
        {"now": _ms(head), "reference": _ms(before)},
    )


def base_memory_rows(base: BaseRun) -> list[dict[str, Any]]:
    rows = []
    for result in base.memory.values():
        rows.append(_base_memory_row(base, result))
    return rows


def _base_memory_row(base: BaseRun, result: MemoryVsBase) -> dict[str, Any]:
    return _row(
        result.case,
        "memory",
        "one batch peak",
        "MiB",
        result.verdict,
        result.head_bytes / 2**20,
        {"kind": "base", "source": base.base.label, "value": result.base_bytes / 2**20},
        result.ratio,
        None,
        f"x{result.ratio:.3f}, x{1 + result.tolerance:.2f} allowed",
        _fix("memory", result.verdict, result.case, {"kind": "base"}),
    )


def memory_rows(figures: Iterable[MemoryFigure]) -> list[dict[str, Any]]:
    rows = []
    for figure in figures:
        ceiling = figure.ceiling
        reference = (
            {
                "kind": "ceiling",
                "source": "baselines/memory",
                "value": ceiling.ceiling_bytes / 2**20,
            }
            if ceiling is not None
            else None
        )
        rows.append(
            _row(
                figure.case,
                "memory",
                f"{figure.figure} peak",
                "MiB",
                figure.verdict,
                figure.measured_bytes / 2**20,
                reference,
                figure.measured_bytes / ceiling.ceiling_bytes if ceiling is not None else None,
                why="; ".join(
                    ([] if ceiling is not None else ["no ceiling recorded for this case"])
                    + ([f"traced in {figure.traced_in}"] if figure.traced_in else [])
                ),
                fix=_fix("memory", figure.verdict, figure.case, reference),
            )
        )
    return rows


_KINDS = {REFERENCE: "fp32", BASELINE: "baseline", BASE: "base", FLOOR: "floor"}


def accuracy_rows(workspace: Workspace) -> list[dict[str, Any]]:
    rows = []
    for case, result in workspace.accuracy.results.items():
        for finding in result.findings:
            rows.append(_accuracy_row(case, finding, workspace))
    return rows


def _accuracy_row(case: Case, finding: Finding, workspace: Workspace) -> dict[str, Any]:
    compared = finding.reference if finding.gate == REFERENCE else finding.baseline
    source = {
        REFERENCE: "eager fp32 in this run",
        BASELINE: workspace.accuracy.display_path(case.model),
        BASE: workspace.base.base.label if workspace.base is not None else "base",
        FLOOR: "the model's floors",
    }[finding.gate]
    reference = (
        {"kind": _KINDS[finding.gate], "source": source, "value": compared}
        if compared is not None
        else None
    )
    interval = finding.interval
    return _row(
        case,
        "accuracy",
        f"{finding.metric} {finding.gate}",
        "",
        finding.verdict,
        finding.now,
        reference,
        finding.delta,
        (interval.low, interval.high) if interval is not None else None,
        finding.detail,
        _fix("accuracy", finding.verdict, case, reference),
    )


def agreement_rows(workspace: Workspace) -> list[dict[str, Any]]:
    rows = []
    verdicts = workspace.agreement.verdicts()
    for case, agreement in workspace.agreement.results.items():
        precision = tolerance_for(case)
        verdict = verdicts[case.id]
        failure = agreement.failure(precision)
        rows.append(
            _row(
                case,
                "agreement",
                "top-1 agreement",
                "",
                verdict,
                agreement.top1,
                {
                    "kind": "limit",
                    "source": f"{case.precision} tolerance",
                    "value": precision.min_top1_agreement,
                },
                why=failure
                or f"relative logit delta {agreement.relative_delta:.2g} "
                f"(<= {precision.max_logit_delta:g})",
                fix=_fix("agreement", verdict, case, None),
            )
        )
    return rows


def _fix(gate: str, verdict: Verdict, case: Case, reference: Mapping[str, Any] | None) -> str:
    """What a reviewer does about a failing or undecided verdict."""
    rerun = f"`pytest perf_tests -k '{case.id}'`"
    if verdict == Verdict.TOO_NOISY:
        return f"re-run {rerun} on a quieter machine; nothing was decided"
    if not verdict.fails:
        return ""
    kind = (reference or {}).get("kind")
    if verdict == Verdict.STALE_BASELINE:
        return f"re-record: {rerun} --update-baselines, review the diff and commit"
    if gate == "latency" and kind == "base":
        return (
            f"reproduce with {rerun} --medgate-base=<base>; profile it, or, if the slowdown is "
            "the price of the change, say so in the PR"
        )
    if gate == "latency":
        return (
            f"reproduce with {rerun}; if intended, re-record with `make baseline` (or raise the "
            "budget in baselines/budgets.toml) and commit"
        )
    if gate == "accuracy":
        return (
            f"inspect the flipped images of {rerun}; if intended, re-record with "
            "--update-baselines and say why in the PR (floors are never re-recorded)"
        )
    if gate == "memory":
        return f"reproduce with {rerun}; if intended, re-record the ceiling with --update-baselines"
    return (
        f"the outputs differ from eager fp32 beyond the {case.precision} tolerance: check the "
        "export or quantization; a known disagreement is declared in the model's spec"
    )


def case_figures(
    workspace: Workspace, peaks: Peaks | None, power: PowerModel | None
) -> list[dict[str, Any]]:
    """Every case the run measured, with what each lane measured of it."""
    entries: dict[str, dict[str, Any]] = {}

    def entry(case: Case) -> dict[str, Any]:
        if case.id not in entries:
            entries[case.id] = case_entry(case)
        return entries[case.id]

    for result in workspace.latency.results.values():
        if result.key == result.case.id:
            seconds = result.rounds.series.get("model")
            if seconds:
                entry(result.case)["latency"] = _latency_figures(
                    workspace, result.case, seconds, peaks, power
                )
    if workspace.base is not None:
        for base_result in workspace.base.latency.values():
            head = [s for pair in base_result.pairs for s in pair.head.seconds]
            if head:
                entry(base_result.case)["latency"] = _latency_figures(
                    workspace, base_result.case, head, peaks, power
                )
        for memory in workspace.base.memory.values():
            entry(memory.case).setdefault("memory", {})["one batch peak"] = memory.head_bytes
    for figure in workspace.memory.figures.values():
        record = entry(figure.case)
        record.setdefault("memory", {})[figure.figure] = figure.measured_bytes
        if figure.artifact_bytes is not None:
            record["artifact_bytes"] = figure.artifact_bytes
    for case, accuracy in workspace.accuracy.results.items():
        record = entry(case)
        record["accuracy"] = {k: v for k, v in accuracy.metrics.items() if v is not None}
        record["accuracy_vs_fp32"] = {
            f.metric: f.delta
            for f in accuracy.findings
            if f.gate == REFERENCE and f.delta is not None
        }
    for case, agreement in workspace.agreement.results.items():
        entry(case)["agreement_top1"] = agreement.top1
    return sorted(entries.values(), key=lambda e: e["id"])


def _latency_figures(
    workspace: Workspace,
    case: Case,
    seconds: list[float] | tuple[float, ...],
    peaks: Peaks | None,
    power: PowerModel | None,
) -> dict[str, Any]:
    median = percentile(seconds, 50)
    flops = workspace.facts(case.model, case.input_size).flops_per_sample * case.batch
    figures: dict[str, Any] = {
        "p50_ms": median * 1e3,
        "p95_ms": percentile(seconds, 95) * 1e3,
        "p99_ms": percentile(seconds, 99) * 1e3,
        "rounds": len(seconds),
        "samples_per_s": case.batch / median,
        "flops": flops,
        "param_bytes": workspace.facts(case.model, case.input_size).param_bytes,
        "achieved_flops": flops / median,
    }
    peak = peaks.for_precision(case.precision) if peaks is not None else None
    if peak is not None:
        figures["peak_dtype"] = peak.dtype
        figures["efficiency"] = flops / median / peak.flops
    if power is not None:
        joules = power.joules(median, workspace.config.threads, case.device)
        figures["energy_mj_per_sample"] = joules / case.batch * 1e3
    return figures


def collect(
    workspace: Workspace,
    *,
    started: datetime.datetime,
    wall_s: float,
    lanes_s: Mapping[str, float],
    steps_s: Mapping[str, Mapping[str, float]] | None = None,
    outcome: str,
    peaks: Peaks | None,
    power: PowerModel | None,
    notes: Iterable[str] = (),
    known: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The document of one run (one shard). ``known``: case id -> why its failure was declared
    (an ``xfail`` that failed as declared); its failing rows say so and fail nothing."""
    rows = [
        *latency_rows(workspace),
        *accuracy_rows(workspace),
        *memory_rows(workspace.memory.figures.values()),
        *agreement_rows(workspace),
    ]
    base = workspace.base
    if base is not None:
        rows += base_latency_rows(base) + base_memory_rows(base)
        rows += [
            _row(
                case,
                "base",
                "inputs",
                "",
                Verdict.IDENTICAL,
                None,
                {"kind": "base", "source": base.base.label, "value": None},
                why=f"{case.model}'s engine, model code, weights, data and versions hash the "
                "same on both sides",
            )
            for case in base.identical_cases
        ]
    config = workspace.config
    shard = config.shard or ",".join(config.matrix.models) or "all"
    cases = case_figures(workspace, peaks, power)
    seen = {entry["id"] for entry in cases}
    for case in _row_cases(workspace):
        if case.id not in seen:
            seen.add(case.id)
            cases.append(case_entry(case))
    for case_id, reason in (skipped or {}).items():
        if case_id not in seen:
            seen.add(case_id)
            cases.append({**_parse_id(case_id), "skipped": reason})
    for entry in cases:
        entry["shard"] = 0
    for row in rows:
        row["shard"] = 0
        if known and row["case"] in known and Verdict(row["verdict"]).fails:
            row["known"] = known[row["case"]]
    notes = [*notes, *above_peak_notes(cases)]
    return {
        "schema": SCHEMA_ID,
        "shards": [
            {
                "name": shard,
                "started": started.isoformat(timespec="seconds"),
                "wall_s": wall_s,
                "lanes_s": dict(lanes_s),
                "steps_s": {lane: dict(spent) for lane, spent in (steps_s or {}).items()},
                "outcome": outcome,
                "machine": {
                    "fingerprint_id": workspace.fingerprint.id,
                    "facts": dict(workspace.fingerprint.facts),
                },
                "threads": config.threads,
                "versions": library_versions(),
                "reference": {"kind": "base", "label": base.base.label}
                if base is not None
                else {"kind": "baselines", "dir": str(config.baseline_dir.name)},
                "peaks": peaks.as_dict() if peaks is not None else None,
                "power": power.as_dict() if power is not None else None,
                "notes": list(notes),
            }
        ],
        "cases": sorted(cases, key=lambda e: e["id"]),
        "measurements": sorted(rows, key=lambda r: (r["case"], r["gate"], r["metric"])),
    }


def _parse_id(case_id: str) -> dict[str, Any]:
    """A case entry from its id alone (``Case.id``: model-backend-precision-size-bsN-device),
    for a case that was skipped before anything built it."""
    head, size, batch, device = case_id.rsplit("-", 3)
    model_backend, precision = _split_precision(head)
    model, backend = model_backend.rsplit("-", 1)
    return {
        "id": case_id,
        "model": model,
        "backend": backend,
        "precision": precision,
        "input_size": int(size),
        "batch": int(batch.removeprefix("bs")),
        "device": device,
    }


def _split_precision(head: str) -> tuple[str, str]:
    for precision in sorted(PRECISIONS, key=len, reverse=True):
        if head.endswith("-" + precision):
            return head[: -len(precision) - 1], precision
    raise ValueError(f"case id {head!r} ends in no known precision")


def above_peak_notes(cases: Iterable[Mapping[str, Any]]) -> list[str]:
    """A case faster than its precision's peak means the peak is wrong: a kernel faster than
    the ones measured exists (or the FLOPs are over-counted); its efficiency means nothing."""
    notes = []
    for case in cases:
        latency = case.get("latency", {})
        efficiency = latency.get("efficiency")
        if efficiency is not None and efficiency > 1:
            notes.append(
                f"{case['id']} runs at {efficiency:.0%} of the measured {latency['peak_dtype']} "
                "peak: the peak is wrong (a faster kernel than those measured, or FLOPs counted "
                "that the backend does not execute); its roofline figure is not meaningful"
            )
    return notes


def _row_cases(workspace: Workspace) -> list[Case]:
    cases: list[Case] = [r.case for r in workspace.latency.results.values()]
    cases += list(workspace.accuracy.results) + list(workspace.agreement.results)
    cases += [f.case for f in workspace.memory.figures.values()]
    if workspace.base is not None:
        cases += list(workspace.base.latency) + list(workspace.base.memory)
        cases += workspace.base.identical_cases
    return cases
