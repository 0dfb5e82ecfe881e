"""The end-of-run memory table: every measured figure beside the model-level facts."""

from __future__ import annotations

from collections.abc import Iterable

from tabulate import tabulate

from medgate.gates.memory.run import MemoryFigure


def mebibytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.2f}"


def memory_table(figures: Iterable[MemoryFigure]) -> str:
    rows = [
        [
            figure.case.id,
            figure.figure,
            mebibytes(figure.measured_bytes),
            mebibytes(figure.ceiling.ceiling_bytes if figure.ceiling else None),
            mebibytes(figure.param_bytes),
            mebibytes(figure.artifact_bytes),
            str(figure.verdict),
        ]
        for figure in sorted(figures, key=lambda f: (f.case, f.figure))
    ]
    headers = [
        "case",
        "figure",
        "peak MiB",
        "ceiling MiB",
        "parameters MiB",
        "artifact MiB",
        "verdict",
    ]
    table: str = tabulate(rows, headers=headers, disable_numparse=True)
    return table
