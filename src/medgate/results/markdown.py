"""``report.md``: a results document as a reviewer reads it in a pull request.

The headline and every regression come first; per model, one row per backend x precision x
size, folded in ``<details>``; the size trade-off of each set of weights; the machine, the
peaks, the power model and the wall time last.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medgate.core.verdict import FAILING, SEVERITY
from medgate.results.tradeoff import family_tables

#: Verdicts a reviewer must look at, listed before everything else.
UNDECIDED = ("TOO NOISY",)


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _delta(row: Mapping[str, Any]) -> str:
    delta = row["delta"]
    if delta is None:
        return ""
    if row["gate"] in ("latency", "memory") or row["unit"] in ("ms", "MiB"):
        return f"x{delta:.3f}"
    return f"{delta * 100:+.1f} pp"


def _value(row: Mapping[str, Any], value: float | None) -> str:
    if value is None:
        return ""
    if row["unit"] == "":
        return f"{value:.1%}" if 0 <= value <= 1 else _number(value)
    return f"{_number(value)} {row['unit']}"


def _ci(row: Mapping[str, Any]) -> str:
    ci = row["ci"]
    if ci is None:
        return ""
    if row["gate"] == "accuracy":
        return f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}] pp"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _reference(row: Mapping[str, Any]) -> str:
    reference = row["reference"]
    if reference is None:
        return ""
    value = _value(row, reference["value"])
    return f"{value} ({reference['kind']})" if value else reference["kind"]


def _verdict_rows(rows: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            f"`{row['case']}`",
            row["gate"],
            row["metric"],
            _reference(row),
            _value(row, row["now"]),
            _delta(row),
            _ci(row),
            f"**{row['verdict']}**",
            row["fix"] or row["why"],
        ]
        for row in rows
    ]


VERDICT_HEADERS = ("case", "gate", "metric", "reference", "now", "Δ", "CI", "verdict", "what to do")


def failing_rows(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Rows that fail the run: a failing verdict not declared as a known failure."""
    failing = {str(v) for v in FAILING}
    return [r for r in document["measurements"] if r["verdict"] in failing and "known" not in r]


def _label(row: Mapping[str, Any]) -> str:
    """The verdict as counted: a declared known failure is told apart from a new one."""
    return f"{row['verdict']} (known)" if "known" in row else str(row["verdict"])


def _tally(rows: Iterable[Mapping[str, Any]]) -> str:
    order = {str(v): i for i, v in enumerate(SEVERITY)}
    counts = Counter(_label(row) for row in rows)
    ranked = sorted(counts.items(), key=lambda item: (order[item[0].split(" (")[0]], item[0]))
    return ", ".join(f"{n} {label}" for label, n in ranked)


def headline(document: Mapping[str, Any]) -> tuple[bool, str]:
    rows = document["measurements"]
    failing = failing_rows(document)
    outcomes = {shard["outcome"] for shard in document["shards"]}
    passed = not failing and outcomes <= {"passed"}
    gates = sorted({row["gate"] for row in rows})
    tally = "; ".join(f"{gate}: {_tally(r for r in rows if r['gate'] == gate)}" for gate in gates)
    skipped = sum("skipped" in case for case in document["cases"])
    measured = len(document["cases"]) - skipped
    status = "PASS" if passed else "FAIL"
    why = f"{len(failing)} failing verdict(s)" if failing else "no failing verdict"
    if not passed and not failing:
        why = f"the run ended {', '.join(sorted(outcomes - {'passed'}))}"
    cases = f"{measured} cases" + (f" ({skipped} skipped, each with why)" if skipped else "")
    return passed, f"## medgate: {status} — {why} over {cases}\n\n{tally or 'nothing judged'}"


def _references(document: Mapping[str, Any]) -> str:
    lines = []
    for shard in document["shards"]:
        reference = shard["reference"]
        against = (
            f"the base revision {reference['label']}, measured side by side in this run"
            if reference["kind"] == "base"
            else f"the stored baselines in `{reference['dir']}/`"
        )
        lines.append(f"- shard `{shard['name']}`: compared with {against}")
    return "\n".join(lines)


def _config_rows(cases: Sequence[Mapping[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Cases of one model merged per backend x precision x size x device (latency at batch 1,
    throughput at its batch, accuracy at the evaluation batch)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for case in sorted(cases, key=lambda c: c["batch"]):
        if "skipped" in case:
            continue
        key = (case["backend"], case["precision"], case["input_size"], case["device"])
        row = merged.setdefault(key, {})
        if "latency" in case:
            if case["batch"] == 1:
                row["latency"] = case["latency"]
            row["samples_per_s"] = max(
                row.get("samples_per_s", 0.0), case["latency"]["samples_per_s"]
            )
        for field in ("accuracy", "accuracy_vs_fp32", "artifact_bytes", "agreement_top1"):
            if field in case:
                row[field] = case[field]
        for figure, size in case.get("memory", {}).items():
            row.setdefault("memory", {})[figure] = size
    return merged


MODEL_HEADERS = (
    "backend",
    "precision",
    "size",
    "device",
    "p50 ms",
    "p95 ms",
    "samples/s",
    "roofline",
    "energy mJ/img",
    "artifact MB",
    "peak MiB",
    "sens",
    "spec",
    "AUROC",
    "Δ sens vs fp32",
    "verdict",
)


def model_table(cases: Sequence[Mapping[str, Any]], verdicts: Mapping[tuple[Any, ...], str]) -> str:
    rows = []
    merged = _config_rows(cases)
    for key in sorted(merged, key=lambda k: (k[0], k[1], -k[2], k[3])):
        row = merged[key]
        latency = row.get("latency", {})
        accuracy = row.get("accuracy", {})
        memory = row.get("memory", {})
        efficiency = latency.get("efficiency")
        delta = row.get("accuracy_vs_fp32", {}).get("sensitivity")
        artifact = row.get("artifact_bytes")
        rows.append(
            [
                *key,
                _number(latency.get("p50_ms")),
                _number(latency.get("p95_ms")),
                _number(row.get("samples_per_s"), 1),
                _efficiency(efficiency),
                _number(latency.get("energy_mj_per_sample")),
                _number(artifact / 1e6, 1) if artifact else "",
                _number(max(memory.values()) / 2**20, 1) if memory else "",
                f"{accuracy['sensitivity']:.1%}" if "sensitivity" in accuracy else "",
                f"{accuracy['specificity']:.1%}" if "specificity" in accuracy else "",
                f"{accuracy['auroc']:.3f}" if "auroc" in accuracy else "",
                f"{delta * 100:+.1f} pp" if delta is not None else "",
                verdicts.get((cases[0]["model"], *key), ""),
            ]
        )
    return _table(MODEL_HEADERS, rows)


def _efficiency(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0%} (above peak!)" if value > 1 else f"{value:.0%}"


def _config_verdicts(document: Mapping[str, Any]) -> dict[tuple[Any, ...], str]:
    """Each model x backend x precision x size x device's worst verdict over its cases' rows."""
    by_id = {case["id"]: case for case in document["cases"]}
    order = {str(v): i for i, v in enumerate(SEVERITY)}
    worst: dict[tuple[Any, ...], tuple[int, str]] = {}
    for row in document["measurements"]:
        case = by_id.get(row["case"])
        if case is None:
            continue
        key = (
            case["model"],
            case["backend"],
            case["precision"],
            case["input_size"],
            case["device"],
        )
        # A declared known failure ranks with the undecided: it fails nothing.
        rank = order["TOO NOISY"] if "known" in row else order[row["verdict"]]
        if key not in worst or rank < worst[key][0]:
            label = f"{row['verdict']} (known)" if "known" in row else row["verdict"]
            worst[key] = (rank, label)
    return {key: label for key, (_, label) in worst.items()}


def _machine_section(document: Mapping[str, Any]) -> str:
    parts = []
    for shard in document["shards"]:
        facts = shard["machine"]["facts"]
        lanes = ", ".join(f"{lane} {seconds:.0f} s" for lane, seconds in shard["lanes_s"].items())
        lines = [
            f"**shard `{shard['name']}`** ({shard['outcome']}, started {shard['started']}, "
            f"{shard['wall_s']:.0f} s: {lanes})",
            "",
            f"- machine `{shard['machine']['fingerprint_id']}`: {facts.get('cpu_brand', '')} "
            f"({facts.get('cpu_uarch', '')}), ISA {' '.join(facts.get('cpu_isa', []))}, "
            f"{shard['threads']} threads",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(shard["versions"].items())),
        ]
        for lane, spent in shard.get("steps_s", {}).items():
            if spent:
                steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in spent.items())
                lines.append(f"- {lane}: {steps}")
        peaks = shard["peaks"]
        if peaks is not None:
            measured = "; ".join(
                f"{dtype} {peak['flops'] / 1e9:.0f} G{'OP' if dtype == 'int8' else 'FLOP'}/s "
                f"({peak['kernel']}" + ("" if peak["native"] else ", no VNNI/AMX") + ")"
                for dtype, peak in peaks["by_dtype"].items()
            )
            bandwidth = peaks.get("bandwidth")
            lines.append(
                f"- peaks ({peaks['gemm_size']}² GEMM, {peaks['threads']} threads, measured in "
                f"this run): {measured}"
                + (f"; copy bandwidth {bandwidth / 1e9:.1f} GB/s" if bandwidth else "")
            )
            lines += [f"- no {dtype} peak: {why}" for dtype, why in peaks["missing"].items()]
        power = shard["power"]
        if power is not None:
            label = "measured" if power["source"] in ("rapl", "nvml") else "NOT measured"
            lines.append(
                f"- energy: an **estimate** ({power['source']}, power {label}): {power['detail']}"
            )
        lines += [f"- {note}" for note in shard["notes"]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


#: Case ids listed per line of a folded summary; results.json has them all.
EXAMPLES = 4

#: Verdicts that judged nothing: the report counts them by reason instead of listing them.
UNJUDGED = ("no baseline", "other machine", "recorded", "identical to base", "n/a")


def _some(ids: Sequence[str]) -> str:
    shown = ", ".join(f"`{i}`" for i in sorted(ids)[:EXAMPLES])
    more = len(ids) - EXAMPLES
    return f"{len(ids)}: {shown}" + (f" and {more} more" if more > 0 else "")


def _unjudged(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One line per gate, verdict and reason of the rows that judged nothing."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row in rows:
        if row["verdict"] in UNJUDGED:
            reason = (row["why"] or row["fix"]).split(";")[0]
            groups.setdefault((row["gate"], row["verdict"], reason), []).append(row["case"])
    return [
        [gate, verdict, _some(ids), reason]
        for (gate, verdict, reason), ids in sorted(groups.items())
    ]


def render(document: Mapping[str, Any], plots: Mapping[str, Sequence[str]] | None = None) -> str:
    """The markdown of ``document``; ``plots`` maps a model (or ``""`` for the run) to the
    relative paths of its PNGs."""
    plots = plots or {}
    _, head = headline(document)
    parts = [head, _references(document)]
    rows = document["measurements"]
    failing = failing_rows(document)
    known = [r for r in rows if "known" in r]
    undecided = [r for r in rows if r["verdict"] in UNDECIDED]
    if failing:
        parts += [
            f"### Regressions ({len(failing)})",
            _table(VERDICT_HEADERS, _verdict_rows(failing)),
        ]
    if known:
        parts += [
            f"<details><summary>Known failures ({len(known)}), declared in the model's spec"
            "</summary>\n",
            _table(
                ("case", "gate", "metric", "now", "Δ", "verdict", "declared because"),
                [
                    [
                        f"`{r['case']}`",
                        r["gate"],
                        r["metric"],
                        _value(r, r["now"]),
                        _delta(r),
                        r["verdict"],
                        r["known"],
                    ]
                    for r in known
                ],
            ),
            "</details>",
        ]
    if undecided:
        parts += [
            f"<details><summary>Undecided ({len(undecided)}): too noisy to tell</summary>\n",
            _table(VERDICT_HEADERS, _verdict_rows(undecided)),
            "</details>",
        ]
    verdicts = _config_verdicts(document)
    models = sorted({case["model"] for case in document["cases"]})
    for model in models:
        cases = [case for case in document["cases"] if case["model"] == model]
        ids = {c["id"] for c in cases}
        skipped = sum("skipped" in case for case in cases)
        tally = _tally(r for r in rows if r["case"] in ids)
        tally += f"; {skipped} skipped" if skipped else ""
        images = "\n".join(f"![{path}]({path})" for path in plots.get(model, ()))
        parts.append(
            f"<details><summary><b>{model}</b>: {len(cases) - skipped} cases; {tally}</summary>"
            "\n\n"
            f"{model_table(cases, verdicts)}\n\n{images}\n</details>"
        )
    tables = family_tables(document["cases"])
    if tables:
        parts.append("### Size trade-off: accuracy · p50 at batch 1, per input size")
    for table in tables:
        summary = f" (eager fp32: {table.summary})" if table.summary else ""
        parts.append(
            f"<details><summary><b>{table.family}</b> across sizes{summary}</summary>\n\n"
            f"{_table(table.headers, table.rows)}\n</details>"
        )
    skips: dict[str, list[str]] = {}
    for case in document["cases"]:
        if "skipped" in case:
            skips.setdefault(case["skipped"], []).append(case["id"])
    if skips:
        parts.append(
            f"<details><summary>Skipped ({sum(map(len, skips.values()))}), each with why"
            "</summary>\n\n"
            + _table(
                ("why", "cases"),
                [[why, _some(ids)] for why, ids in sorted(skips.items())],
            )
            + "\n</details>"
        )
    run_images = "\n".join(f"![{path}]({path})" for path in plots.get("", ()))
    unjudged = _unjudged(rows)
    if unjudged:
        parts.append(
            "<details><summary>Not judged, and why</summary>\n\n"
            + _table(("gate", "verdict", "cases", "why"), unjudged)
            + "\n</details>"
        )
    parts.append(
        "<details><summary>Machine, peaks, energy model, wall time</summary>\n\n"
        + _machine_section(document)
        + (f"\n\n{run_images}" if run_images else "")
        + "\n</details>"
    )
    return "\n\n".join(part for part in parts if part) + "\n"
