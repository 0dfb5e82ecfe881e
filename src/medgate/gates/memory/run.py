"""One run's memory lane: the ceilings it reads, every measured figure, and the ceilings it
records under ``--update-baselines``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medgate.core.files import display_path
from medgate.core.machine import cpu, library_versions
from medgate.core.matrix import Case
from medgate.core.verdict import Verdict
from medgate.gates.memory.memray_peak import TRACER
from medgate.gates.memory.store import (
    Ceiling,
    MemoryBaseline,
    memory_path,
    read_memory_baseline,
    write_memory_baseline,
)

#: Bytes a ceiling keeps above its measurement at the least, per figure. Building a session
#: imports modules and fills first-use caches whose objects are live at its peak, and which of
#: them are still to fill depends on what ran before in the process, so a session ceiling gets
#: 2 MiB of room however small the model. One inference batch measures the same to the byte.
MIN_SLACK_BYTES = {"session": 2 * 2**20, "inference": 0, "cuda_peak": 0}


def ceiling_for(figure: str, measured_bytes: int, headroom: float) -> int:
    with_headroom = round(measured_bytes * (1 + headroom))
    return max(with_headroom, measured_bytes + MIN_SLACK_BYTES[figure])


@dataclass(frozen=True)
class MemoryFigure:
    case: Case
    figure: str
    measured_bytes: int
    ceiling: Ceiling | None
    param_bytes: int
    artifact_bytes: int | None

    recording: bool = False
    #: Where the figure was traced when not by pytest-memray around the test in this process.
    traced_in: str = ""

    @property
    def verdict(self) -> Verdict:
        if self.recording:
            return Verdict.RECORDED
        if self.ceiling is None:
            return Verdict.NO_BASELINE
        if self.measured_bytes < self.ceiling.ceiling_bytes:
            return Verdict.OK
        return Verdict.BEYOND_LIMIT


class MemoryLedger:
    lane = "memory"

    def __init__(
        self, baseline_dir: Path, root: Path, update: bool, headroom: float, threads: int
    ) -> None:
        self.baseline_dir = baseline_dir
        self.root = root
        self.update = update
        self.headroom = headroom
        #: Recorded with the ceilings: peak memory depends on the threads that allocate.
        self.threads = threads
        self.notes: list[str] = []
        self.figures: dict[tuple[Case, str], MemoryFigure] = {}
        self._baselines: dict[str, MemoryBaseline | None] = {}

    def path(self, model: str) -> Path:
        return memory_path(self.baseline_dir, model)

    def display_path(self, model: str) -> str:
        return display_path(self.path(model), self.root)

    def baseline(self, model: str) -> MemoryBaseline | None:
        """The stored ceilings of ``model``; raises ``BaselineError`` for an unusable file."""
        if model not in self._baselines:
            self._baselines[model] = read_memory_baseline(self.path(model))
        return self._baselines[model]

    def ceiling(self, case: Case, figure: str) -> Ceiling | None:
        stored = self.baseline(case.model)
        if stored is None:
            return None
        return stored.cases.get(case.key(), {}).get(figure)

    def observe(
        self,
        case: Case,
        figure: str,
        measured_bytes: int,
        param_bytes: int,
        artifact_bytes: int | None,
        traced_in: str = "",
    ) -> MemoryFigure:
        observed = MemoryFigure(
            case,
            figure,
            measured_bytes,
            None if self.update else self.ceiling(case, figure),
            param_bytes,
            artifact_bytes,
            recording=self.update,
            traced_in=traced_in,
        )
        self.figures[(case, figure)] = observed
        return observed

    def problems(self, observed: MemoryFigure) -> list[str]:
        """What fails the test of a figure medgate itself holds to its ceiling: the CUDA peak,
        and an ``inference`` figure the head's worker traced against a base. pytest-memray's
        ``limit_memory`` fails the figures it traces around the test itself."""
        if observed.verdict != Verdict.BEYOND_LIMIT or observed.ceiling is None:
            return []
        return [
            f"{observed.figure} {observed.measured_bytes} B >= ceiling "
            f"{observed.ceiling.ceiling_bytes} B (measured {observed.ceiling.measured_bytes} B "
            f"when recorded) in {self.display_path(observed.case.model)}: {Verdict.BEYOND_LIMIT}"
            + (f" (traced in {observed.traced_in})" if observed.traced_in else "")
        ]

    def verdicts(self) -> dict[str, Verdict]:
        return {
            f"{case.id}:{figure}": seen.verdict for (case, figure), seen in self.figures.items()
        }

    def write(self) -> list[Path]:
        """Merge this run's figures into each model's file as ceilings, atomically."""
        written = []
        for model in sorted({case.model for case, _ in self.figures}):
            stored = read_memory_baseline(self.path(model)) or MemoryBaseline(model, self.headroom)
            stored.headroom = self.headroom
            stored.depends_on = {
                "versions": library_versions(),
                "threads": self.threads,
                "cpu": cpu().describe(),
                "allocator": "glibc malloc (torch CPU, ONNX Runtime with its CPU arena off)",
                "tracer": TRACER,
            }
            for (case, figure), observed in sorted(self.figures.items()):
                if case.model != model:
                    continue
                ceiling = ceiling_for(figure, observed.measured_bytes, self.headroom)
                stored.cases.setdefault(case.key(), {})[figure] = Ceiling(
                    observed.measured_bytes, ceiling
                )
            write_memory_baseline(self.path(model), stored)
            written.append(self.path(model))
        return written
