"""One run's accuracy gate: the stored baselines it reads, every case's verdict, and the
baselines it records under ``--update-baselines``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medgate.core.files import display_path
from medgate.core.machine import library_versions
from medgate.core.matrix import Case
from medgate.core.registry import ModelSpec, get_spec
from medgate.core.verdict import Verdict, worst
from medgate.gates.accuracy.checks import AccuracyGate, Finding, RunIdentity
from medgate.gates.accuracy.metrics import Evaluation, Flips
from medgate.gates.accuracy.store import (
    CaseRecord,
    DatasetIdentity,
    DatasetSection,
    ModelBaseline,
    OldSchemaError,
    baseline_path,
    read_baseline,
    write_baseline,
)


@dataclass(frozen=True)
class CaseAccuracy:
    case: Case
    dataset: str
    metrics: dict[str, float | None]
    flips: Flips | None
    findings: list[Finding]

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.failed]

    def problems(self) -> list[str]:
        """What fails the case's test, one line per failing finding."""
        return [f"{f.gate} {f.metric}: {f.verdict} ({f.detail})" for f in self.failures]


@dataclass
class _Recording:
    dataset: DatasetIdentity
    run: RunIdentity
    cases: dict[str, CaseRecord] = field(default_factory=dict)


class AccuracyLedger:
    lane = "accuracy"

    def __init__(self, baseline_dir: Path, root: Path, update: bool) -> None:
        self.baseline_dir = baseline_dir
        self.root = root
        self.update = update
        self.results: dict[Case, CaseAccuracy] = {}
        self._baselines: dict[str, ModelBaseline | None] = {}
        self._recordings: dict[tuple[str, str], _Recording] = {}
        #: What ``write`` did beyond merging cases, for the run's summary.
        self.notes: list[str] = []

    def path(self, model: str) -> Path:
        return baseline_path(self.baseline_dir, model)

    def display_path(self, model: str) -> str:
        return display_path(self.path(model), self.root)

    def baseline(self, model: str) -> ModelBaseline | None:
        """The stored baseline of ``model``; raises ``BaselineError`` for an unusable file."""
        if model not in self._baselines:
            self._baselines[model] = self._read(model)
        return self._baselines[model]

    def _read(self, model: str) -> ModelBaseline | None:
        try:
            return read_baseline(self.path(model), get_spec(model).num_classes)
        except OldSchemaError:
            # Re-recording is the fix the error names: a file of another schema is replaced
            # whole rather than stopping the run that would replace it.
            if self.update:
                return None
            raise

    def judge(
        self,
        case: Case,
        spec: ModelSpec,
        dataset: DatasetIdentity,
        run: RunIdentity,
        reference: Evaluation | None,
        candidate: Evaluation,
        base: Evaluation | None = None,
    ) -> CaseAccuracy:
        """Every check of ``case``; ``reference`` is None for the reference case itself. With
        ``base`` (the case on the base revision, in this run) the base is the reference the
        change is judged against, in place of the stored baseline."""
        gate = AccuracyGate(spec.accuracy)
        key = case.key(batch=False)
        findings: list[Finding] = []
        if reference is not None:
            findings += gate.against_reference(reference, candidate)
        if self.update:
            recording = self._recordings.setdefault(
                (case.model, dataset.name), _Recording(dataset, run)
            )
            recording.cases[key] = CaseRecord.of(
                candidate.metrics(), candidate.predictions, run.checkpoint
            )
        elif base is not None:
            findings += gate.against_base(base, candidate)
        else:
            stored = self.baseline(case.model)
            section = stored.sections.get(dataset.name) if stored else None
            record = section.cases.get(key) if section else None
            findings += gate.against_baseline(
                record, section, run, candidate, self.display_path(case.model)
            )
        findings += gate.floors(dataset.name, case.key(batch=False, device=False), candidate)
        result = CaseAccuracy(
            case=case,
            dataset=dataset.name,
            metrics=candidate.metrics(),
            flips=Flips.between(reference, candidate) if reference is not None else None,
            findings=findings,
        )
        self.results[case] = result
        return result

    def verdicts(self) -> dict[str, Verdict]:
        return {
            case.id: worst({finding.verdict for finding in result.findings})
            for case, result in self.results.items()
        }

    def write(self) -> list[Path]:
        """Merge this run's recordings into each model's file, atomically; returns the paths.

        The recorded cases replace theirs and every other case is kept, whatever checkpoint it
        was measured with (each case names its own). A section whose dataset changed is
        replaced whole, since its cases' predictions are of other images, and ``notes`` says so.
        """
        versions = library_versions()
        written = []
        for model in sorted({model for model, _ in self._recordings}):
            positive_class = get_spec(model).positive_class
            baseline = self._read(model) or ModelBaseline(model, positive_class)
            baseline.positive_class = positive_class
            for (owner, name), recording in sorted(self._recordings.items()):
                if owner != model:
                    continue
                old = baseline.sections.get(name)
                keep = {}
                if old is not None and old.dataset.sha256 == recording.dataset.sha256:
                    keep = old.cases
                elif old is not None:
                    dropped = sorted(set(old.cases) - set(recording.cases))
                    self.notes.append(
                        f"{self.display_path(model)}: section {name} replaced whole, its dataset "
                        f"changed (SHA-256 {old.dataset.sha256[:12]} -> "
                        f"{recording.dataset.sha256[:12]}); {len(dropped)} case(s) not re-recorded "
                        "were dropped" + (f": {', '.join(dropped)}" if dropped else "")
                    )
                baseline.sections[name] = DatasetSection(
                    dataset=recording.dataset,
                    versions=versions,
                    cases={**keep, **recording.cases},
                )
            write_baseline(self.path(model), baseline)
            written.append(self.path(model))
        return written
