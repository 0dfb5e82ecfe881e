"""The end of a run in the terminal: each gate's table, the files written, the gates' notes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

from medgate.base.report import identity_lines, latency_vs_base_table, memory_vs_base_table
from medgate.gates.accuracy.report import accuracy_tables, missing_baselines
from medgate.gates.agreement.check import summary_table
from medgate.gates.latency.report import latency_notes, latency_table
from medgate.gates.memory.report import memory_table
from medgate.workspace import Workspace


def roofline_table(document: Mapping[str, Any]) -> str:
    """Each timed case's achieved rate against its precision's peak, and its energy estimate."""
    rows = []
    for case in document["cases"]:
        latency = case.get("latency")
        if not latency or "efficiency" not in latency:
            continue
        above = " (above peak!)" if latency["efficiency"] > 1 else ""
        rows.append(
            [
                case["id"],
                f"{latency['p50_ms']:.3f}",
                f"{latency['achieved_flops'] / 1e9:.1f}",
                latency["peak_dtype"],
                f"{latency['efficiency']:.1%}{above}",
                f"{latency.get('energy_mj_per_sample', 0):.2f}",
            ]
        )
    if not rows:
        return ""
    power = next((s["power"] for s in document["shards"] if s["power"]), None)
    energy = f"mJ/sample ({power['source']} estimate)" if power else "mJ/sample"
    headers = ["case", "p50 ms", "GFLOP/s", "peak of", "of peak", energy]
    table: str = tabulate(rows, headers=headers, tablefmt="github")
    return table


def write_summary(terminalreporter: Any, workspace: Workspace) -> None:
    """Every gate's table of the run, then what was written and every gate's notes."""
    if workspace.agreement.results:
        terminalreporter.write_sep("-", "medgate: agreement with eager fp32")
        terminalreporter.write_line(summary_table(workspace.agreement.results))
    if workspace.accuracy.results:
        table, failures = accuracy_tables(workspace.accuracy.results)
        terminalreporter.write_sep("-", "medgate: accuracy on the test split")
        terminalreporter.write_line(table)
        if failures:
            terminalreporter.write_sep("-", "medgate: accuracy findings that need a look")
            terminalreporter.write_line(failures)
        if not workspace.config.update_baselines:
            for model, missing in missing_baselines(workspace.accuracy.results).items():
                terminalreporter.write_line(
                    f"medgate: {model}: {len(missing)} case(s) have no accuracy baseline in "
                    f"{workspace.accuracy.display_path(model)} yet (not compared); record them "
                    "with `pytest perf_tests -m accuracy --update-baselines` and commit the file"
                )
    if workspace.memory.figures:
        terminalreporter.write_sep("-", "medgate: peak memory (memray, all threads)")
        terminalreporter.write_line(memory_table(workspace.memory.figures.values()))
        without_ceiling = sorted(
            {f.case.model for f in workspace.memory.figures.values() if f.ceiling is None}
        )
        if not workspace.config.update_baselines:
            for model in without_ceiling:
                terminalreporter.write_line(
                    f"medgate: {model}: cases without a memory ceiling in "
                    f"{workspace.memory.display_path(model)} were measured, not gated; record "
                    "them with `pytest perf_tests -m memory --update-baselines`"
                )
    if workspace.latency.results:
        terminalreporter.write_sep(
            "-", f"medgate: latency on {workspace.fingerprint.id} vs baselines/latency"
        )
        terminalreporter.write_line(latency_table(workspace.latency.results.values()))
        for note in latency_notes(workspace.latency.results.values()):
            terminalreporter.write_line(f"medgate: {note}")
    base = workspace.base
    if base is not None:
        if base.latency:
            terminalreporter.write_sep("-", f"medgate: latency, head vs base {base.base.label}")
            terminalreporter.write_line(latency_vs_base_table(base.latency.values()))
        if base.memory:
            terminalreporter.write_sep("-", f"medgate: memory, head vs base {base.base.label}")
            terminalreporter.write_line(memory_vs_base_table(base))
        for line in identity_lines(base):
            terminalreporter.write_line(f"medgate: {line}")
    for gate in workspace.gates:
        tally = Counter(gate.verdicts().values())
        if tally:
            counts = ", ".join(f"{count} {verdict}" for verdict, count in sorted(tally.items()))
            terminalreporter.write_line(f"medgate: {gate.lane}: {counts}")
    for path in workspace.baselines_written:
        terminalreporter.write_line(f"medgate: wrote {path}; review the diff before committing")
    for gate in workspace.gates:
        for note in gate.notes:
            terminalreporter.write_line(f"medgate: {note}")
