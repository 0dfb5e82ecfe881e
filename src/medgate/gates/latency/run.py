"""One run's latency gate: the baselines it reads, the verdict of every timed measurement (with
its re-measurements), the budgets, and the rounds it records under ``--update-baselines``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from medgate.core.files import BaselineError, display_path, rerecord_hint
from medgate.core.fingerprint import SCHEMA as FINGERPRINT_SCHEMA
from medgate.core.fingerprint import Fingerprint
from medgate.core.matrix import Case
from medgate.core.registry import get_spec
from medgate.core.verdict import Verdict
from medgate.gates.latency.budgets import Budget, load_budgets
from medgate.gates.latency.sampling import Rounds
from medgate.gates.latency.stats import Comparison, compare, percentile
from medgate.gates.latency.store import (
    LANE,
    LatencyBaseline,
    latency_path,
    read_latency_baseline,
    recorded_machines,
    write_latency_baseline,
)

Basis = Literal["ms", "normalized"]


@dataclass(frozen=True)
class SeriesVerdict:
    name: str
    comparison: Comparison
    final: bool = False

    @property
    def verdict(self) -> Verdict:
        return self.comparison.decided() if self.final else self.comparison.verdict


@dataclass(frozen=True)
class Judgement:
    """Every series of one measurement against its baseline, on one basis: ``ms``, or
    ``normalized`` (each round over the reference workload's round beside it) when the baseline
    is another machine's or when asked (``--latency-normalize=always``). On the same machine
    milliseconds decide even when the reference workload moved: in A/A runs on a shared 2-core
    VM the small reference moved more than the models did, and judging in its units raised
    more false alarms than it removed (README, "The latency gate")."""

    basis: Basis
    series: tuple[SeriesVerdict, ...]
    #: The reference workload now against when the baseline was recorded: the machine's drift.
    machine: Comparison

    @property
    def verdict(self) -> Verdict:
        verdicts = {series.verdict for series in self.series}
        if Verdict.REGRESSED in verdicts:
            return Verdict.REGRESSED
        return Verdict.TOO_NOISY if Verdict.TOO_NOISY in verdicts else Verdict.SAME

    def decided(self) -> Judgement:
        final = tuple(dataclasses.replace(series, final=True) for series in self.series)
        return Judgement(self.basis, final, self.machine)


@dataclass(frozen=True)
class LatencyResult:
    case: Case
    key: str
    rounds: Rounds
    tolerance: float
    status: Verdict
    judgement: Judgement | None = None
    remeasures: int = 0
    note: str = ""
    budget_failures: tuple[str, ...] = ()
    #: The baseline file compared with, as a reviewer finds it.
    source: str = ""

    def problems(self) -> list[str]:
        """What fails the test: a regression, a budget exceeded. Named by the series' key
        when it is a stage of the case."""
        problems = list(self.budget_failures)
        if self.status == Verdict.REGRESSED and self.judgement is not None:
            slower = [
                f"{s.name} {s.comparison.describe()}"
                for s in self.judgement.series
                if s.verdict == Verdict.REGRESSED
            ]
            basis = "" if self.judgement.basis == "ms" else " in units of the reference workload"
            problems.append(
                f"slower than the baseline in {self.source}{basis}: {'; '.join(slower)}"
                f"{f' ({self.note})' if self.note else ''}"
            )
        prefix = "" if self.key == self.case.id else f"{self.key}: "
        return [prefix + problem for problem in problems]


def stage_tolerance(tolerance: float, stage_s: float, whole_s: float | None) -> float:
    """A stage may grow by the tolerance of the whole model's time, not of its own: a 0.1 ms
    head of a 17 ms model that takes 0.14 ms slows the product by 0.2 %. In A/A runs here the
    sub-millisecond stages (preprocessing, heads) drifted by 15-60 % between runs."""
    if whole_s is None or stage_s <= 0:
        return tolerance
    return tolerance * max(1.0, whole_s / stage_s)


MachineShift = Literal["none", "slower", "faster"]


def machine_shift(machine: Comparison) -> MachineShift:
    """Whether the reference workload itself moved beyond the tolerance since the baseline."""
    if machine.low > 1 + machine.tolerance:
        return "slower"
    if machine.high < 1 / (1 + machine.tolerance):
        return "faster"
    return "none"


@dataclass
class LatencyLedger:
    lane: ClassVar[str] = "latency"
    baseline_dir: Path
    root: Path
    update: bool
    fingerprint: Fingerprint
    tolerance: float = 0.10
    alpha: float = 0.05
    max_remeasures: int = 2
    normalize: Literal["auto", "always"] = "auto"
    #: pytest-benchmark's --benchmark-max-time and --benchmark-min-rounds: a measurement's size.
    max_time: float = 1.0
    min_rounds: int = 5
    #: A fingerprint id whose baselines are compared with, in normalized units, when this
    #: machine has none of its own; None refuses such comparisons.
    baseline_machine: str | None = None
    results: dict[str, LatencyResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _baselines: dict[tuple[str, str], LatencyBaseline | None] = field(default_factory=dict)
    _budgets: tuple[Budget, ...] | None = None

    @property
    def budgets_path(self) -> Path:
        return self.baseline_dir / "budgets.toml"

    @property
    def budgets(self) -> tuple[Budget, ...]:
        if self._budgets is None:
            self._budgets = load_budgets(self.budgets_path)
        return self._budgets

    def display_path(self, machine: str, model: str) -> str:
        return display_path(latency_path(self.baseline_dir, machine, model), self.root)

    def baseline(self, machine: str, model: str) -> LatencyBaseline | None:
        key = (machine, model)
        if key not in self._baselines:
            self._baselines[key] = read_latency_baseline(
                latency_path(self.baseline_dir, machine, model)
            )
        return self._baselines[key]

    def preload(self, models: list[str]) -> None:
        """Read every file this run may compare with, so a broken one stops the run at once."""
        self._budgets = load_budgets(self.budgets_path)
        for model in models:
            # Exactly the files a case would read, another machine's included (its refusal
            # names what differs, so it reads that file too).
            self.source(model)

    def tolerance_for(self, case: Case) -> float:
        policy = get_spec(case.model).latency
        return policy.tolerance_for(case.backend, case.precision, case.input_size, self.tolerance)

    def source(self, model: str) -> tuple[LatencyBaseline | None, str]:
        """The baseline to compare ``model`` with, or None and why there is none."""
        own = self.baseline(self.fingerprint.id, model)
        if own is not None:
            return own, ""
        here = f"this machine ({self.fingerprint.id})"
        fix = f"record one here with {rerecord_hint(LANE)}"
        if self.baseline_machine is not None:
            other = self.baseline(self.baseline_machine, model)
            path = self.display_path(self.baseline_machine, model)
            if other is None:
                return None, f"no baseline of {model} in {path} (--latency-baseline-machine)"
            if other.fingerprint.schema != FINGERPRINT_SCHEMA:
                return None, self.old_schema(path, other, fix)
            return other, ""
        machines = recorded_machines(self.baseline_dir, model)
        if not machines:
            return None, f"no latency baseline for {here}; {fix}"
        there = self.baseline(machines[0], model)
        if there is not None and there.fingerprint.schema != FINGERPRINT_SCHEMA:
            return None, self.old_schema(self.display_path(machines[0], model), there, fix)
        differences = "; ".join(self.fingerprint.differences(there.fingerprint)) if there else ""
        return None, (
            f"refused: the latency baselines of {model} were measured on "
            f"{', '.join(machines)}, not on {here} ({differences}); milliseconds from another "
            f"machine are not compared. Either {fix}, or compare in units of the reference "
            f"workload with --latency-baseline-machine={machines[0]}"
        )

    @staticmethod
    def old_schema(path: str, baseline: LatencyBaseline, fix: str) -> str:
        return (
            f"refused: {path} was recorded under machine fingerprint schema "
            f"{baseline.fingerprint.schema}, which named the CPU by its model name alone (a Zen 1 "
            f"and a Zen 5 both read 'AMD EPYC'); this medgate identifies machines by schema "
            f"{FINGERPRINT_SCHEMA} (vendor, family, model, stepping, ISA, caches). Its rounds are "
            f"not compared: {fix} and delete the old directory"
        )

    def judge(
        self,
        baseline: LatencyBaseline,
        before: Rounds,
        now: Rounds,
        tolerance: float,
        whole_s: float | None = None,
    ) -> Judgement:
        """``whole_s``: the whole model's baseline median, for a stage measurement."""
        machine = compare(before.reference, now.reference, tolerance, self.alpha)
        normalized = baseline.fingerprint.id != self.fingerprint.id or self.normalize == "always"
        verdicts = []
        for name in now.series:
            if name not in before.series:
                continue
            old, new = (
                (before.normalized(name), now.normalized(name))
                if normalized
                else (before.series[name], now.series[name])
            )
            allowed = stage_tolerance(tolerance, percentile(before.series[name], 50), whole_s)
            verdicts.append(SeriesVerdict(name, compare(old, new, allowed, self.alpha)))
        return Judgement("normalized" if normalized else "ms", tuple(verdicts), machine)

    def settle(
        self, case: Case, key: str, rounds: Rounds, measure_more: Callable[[int], Rounds]
    ) -> LatencyResult:
        """Judge ``rounds``; while unsure, measure as many rounds again (up to the bound)."""
        tolerance = self.tolerance_for(case)
        if self.update:
            result = LatencyResult(case, key, rounds, tolerance, Verdict.RECORDED)
            return self._finish(result)
        baseline, why = self.source(case.model)
        before = baseline.measurements.get(key) if baseline is not None else None
        if baseline is None or before is None:
            status = Verdict.OTHER_MACHINE if why.startswith("refused") else Verdict.NO_BASELINE
            if baseline is not None:
                path = self.display_path(baseline.fingerprint.id, case.model)
                why = f"no entry {key!r} in {path}; record it with {rerecord_hint(LANE)}"
            return self._finish(LatencyResult(case, key, rounds, tolerance, status, note=why))
        remeasures = 0
        whole = baseline.measurements.get(case.id) if key != case.id else None
        whole_s = (
            percentile(whole.series["model"], 50) if whole and "model" in whole.series else None
        )
        judgement = self.judge(baseline, before, rounds, tolerance, whole_s)
        while judgement.verdict == Verdict.TOO_NOISY and remeasures < self.max_remeasures:
            rounds = rounds.extend(measure_more(rounds.count))
            remeasures += 1
            judgement = self.judge(baseline, before, rounds, tolerance, whole_s)
        judgement = judgement.decided()
        source = self.display_path(baseline.fingerprint.id, case.model)
        note = self._machine_note(judgement, baseline)
        return self._finish(
            LatencyResult(
                case,
                key,
                rounds,
                tolerance,
                judgement.verdict,
                judgement,
                remeasures,
                note,
                source=source,
            )
        )

    def _machine_note(self, judgement: Judgement, baseline: LatencyBaseline) -> str:
        if baseline.fingerprint.id != self.fingerprint.id:
            return f"baseline from machine {baseline.fingerprint.id}"
        shift = machine_shift(judgement.machine)
        if shift == "none":
            return ""
        units = "judged in its units" if judgement.basis == "normalized" else "judged in ms"
        return (
            f"the reference workload runs {shift} than when the baseline was recorded (column "
            f"'machine'): the machine is not in the state it was; {units}"
        )

    def _finish(self, result: LatencyResult) -> LatencyResult:
        model_rounds = result.rounds.series.get("model")
        if model_rounds is not None:
            device_class = self.fingerprint.device_class(result.case.device)
            failures = tuple(
                problem
                for budget in self.budgets
                if budget.matches(result.case, device_class)
                and (problem := budget.exceeded(result.case, model_rounds)) is not None
            )
            result = dataclasses.replace(result, budget_failures=failures)
        self.results[result.key] = result
        return result

    def verdicts(self) -> dict[str, Verdict]:
        return {
            key: Verdict.BEYOND_LIMIT if result.budget_failures else result.status
            for key, result in self.results.items()
        }

    def write(self) -> list[Path]:
        """Merge this run's rounds into this machine's files (atomically); the written paths."""
        by_model: dict[str, dict[str, Rounds]] = {}
        for result in self.results.values():
            by_model.setdefault(result.case.model, {})[result.key] = result.rounds
        written = []
        for model, measurements in sorted(by_model.items()):
            path = latency_path(self.baseline_dir, self.fingerprint.id, model)
            try:
                existing = read_latency_baseline(path)
            except BaselineError:
                existing = None
            merged = dict(existing.measurements) if existing is not None else {}
            merged.update(measurements)
            write_latency_baseline(
                path, LatencyBaseline(model, self.fingerprint, dict(sorted(merged.items())))
            )
            written.append(path)
        return written
