"""One run against the base revision: the two workers, each model's identity on both sides,
and every case's paired verdicts (latency, accuracy, memory), for the tables and the tests."""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medgate.base.client import WORKER, SideSpec, Worker, WorkerError
from medgate.base.interference import CpuTicks, Disturbance
from medgate.base.pairing import Block, Pair, PairedComparison, compare_pairs
from medgate.base.revision import BaseRevisionError, materialize
from medgate.core.config import SuiteConfig
from medgate.core.files import atomic_write_bytes
from medgate.core.machine import package_version
from medgate.core.matrix import Case
from medgate.core.registry import get_spec
from medgate.core.verdict import Verdict

#: What a model's measurements depend on, as the workers report it (``worker_main.identity``).
IDENTITY_FIELDS = ("engine", "model_code", "weights", "dataset", "versions")


@dataclass(frozen=True)
class ModelIdentity:
    model: str
    head: dict[str, Any]
    base: dict[str, Any]

    @property
    def differs(self) -> list[str]:
        return [name for name in IDENTITY_FIELDS if self.head.get(name) != self.base.get(name)]

    @property
    def identical(self) -> bool:
        return not self.differs


@dataclass(frozen=True)
class LatencyVsBase:
    case: Case
    comparison: PairedComparison
    verdict: Verdict
    pairs: tuple[Pair, ...]
    rounds_per_block: int
    #: The same comparison in fresh worker processes, taken when the first read REGRESSED.
    confirmation: PairedComparison | None = None

    @property
    def disturbed(self) -> int:
        return sum(pair.disturbed for pair in self.pairs)

    @property
    def loaded(self) -> int:
        return sum(pair.loaded for pair in self.pairs)

    def problems(self) -> list[str]:
        if self.verdict != Verdict.REGRESSED:
            return []
        confirmed = (
            f"; confirmed in fresh processes: {self.confirmation.describe()}"
            if self.confirmation is not None
            else ""
        )
        return [f"slower than the base: {self.comparison.describe()}{confirmed}"]


@dataclass(frozen=True)
class MemoryVsBase:
    case: Case
    head_bytes: int
    base_bytes: int
    tolerance: float

    @property
    def ratio(self) -> float:
        return self.head_bytes / self.base_bytes if self.base_bytes else math.inf

    @property
    def verdict(self) -> Verdict:
        return Verdict.REGRESSED if self.ratio > 1 + self.tolerance else Verdict.SAME

    def problems(self) -> list[str]:
        if self.verdict != Verdict.REGRESSED:
            return []
        return [
            f"one batch peaks at {self.head_bytes} B, the base at {self.base_bytes} B "
            f"(x{self.ratio:.3f} > x{1 + self.tolerance:.2f} allowed)"
        ]


@dataclass
class BaseRun:
    """Implements ``medgate.gates.base.Gate`` for the comparisons with the base revision."""

    config: SuiteConfig
    head: SideSpec
    base: SideSpec
    #: Where each side's worker writes what it prints (training, warnings, tracebacks).
    log_dir: Path
    seed: int = 0
    lane: str = "base"
    update: bool = False
    notes: list[str] = field(default_factory=list)
    identities: dict[str, ModelIdentity] = field(default_factory=dict)
    latency: dict[Case, LatencyVsBase] = field(default_factory=dict)
    memory: dict[Case, MemoryVsBase] = field(default_factory=dict)
    accuracy: dict[Case, Verdict] = field(default_factory=dict)
    #: Cases not measured because every input of their model hashes the same on both sides.
    identical_cases: list[Case] = field(default_factory=list)
    #: A worker failed a request: its log is kept for the reader of the error.
    failed: bool = False
    #: The machine fingerprint id: part of the key of a stored base evaluation.
    machine: str = ""
    #: Cases whose base evaluation was read back from an earlier run (``base_evaluation``).
    reused_evaluations: list[str] = field(default_factory=list)
    #: Cases and sides whose memory peak was read back from an earlier run (``compare_memory``).
    reused_memory: list[str] = field(default_factory=list)
    _workers: dict[str, Worker] = field(default_factory=dict)
    _prepared: set[tuple[str, Case]] = field(default_factory=set)

    def worker(self, side: str) -> Worker:
        if side not in self._workers:
            spec = self.head if side == "head" else self.base
            self._workers[side] = Worker(
                spec,
                cache_dir=self.config.cache_dir,
                threads=self.config.threads,
                zoo=self.config.zoo,
                calibration_samples=self.config.calibration.samples,
                checkpoints=dict(self.config.checkpoints),
                datasets=dict(self.config.datasets),
                log_path=self.log_dir / f"{side}.log",
            )
        return self._workers[side]

    def _ask(self, side: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.worker(side).ask(request)
        except WorkerError:
            self.failed = True
            raise

    def _ask_sides(self, sides: tuple[str, ...], request: dict[str, Any]) -> dict[str, Any]:
        """``request`` of each side's worker at once, then each reply: a build, a load or a
        hash is mostly one thread of Python, so two sides overlap on two cores. Only for work
        that is not timed. Every reply is read before a failure is raised, so neither worker is
        left with an unread reply."""
        for side in sides:
            try:
                self.worker(side).send(request)
            except WorkerError:
                self.failed = True
                raise
        replies: dict[str, Any] = {}
        failure: WorkerError | None = None
        for side in sides:
            try:
                replies[side] = self.worker(side).receive(request)
            except WorkerError as error:
                self.failed = True
                failure = failure or error
        if failure is not None:
            raise failure
        return replies

    def close(self) -> None:
        """Stop both workers; their logs are kept only when one of them failed."""
        self.restart()
        if not self.failed:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def identity(self, model: str) -> ModelIdentity:
        if model not in self.identities:
            sides = self._ask_sides(("head", "base"), {"op": "identity", "model": model})
            self.identities[model] = ModelIdentity(model, sides["head"], sides["base"])
        return self.identities[model]

    def _prepare(self, case: Case, sides: tuple[str, ...] = ("head", "base")) -> None:
        """Build and warm up ``case``'s session on each of ``sides`` not prepared yet, both at
        once; nothing is timed until both are done."""
        pending = tuple(side for side in sides if (side, case) not in self._prepared)
        if pending:
            self._ask_sides(pending, {"op": "prepare", "case": asdict(case)})
            self._prepared.update((side, case) for side in pending)

    def _block(self, side: str, case: Case, rounds: int) -> Block:
        before, started = CpuTicks.now(), time.perf_counter()
        reply = self._ask(side, {"op": "time", "case": asdict(case), "rounds": rounds})
        after, wall_s = CpuTicks.now(), time.perf_counter() - started
        disturbance = Disturbance.between(before, after, reply["request_cpu_s"], wall_s)
        return Block(tuple(reply["seconds"]), disturbance)

    def _rounds_per_block(self, case: Case) -> int:
        """Rounds that fill ``base_block_s`` on the slower side, 5 at the least."""
        estimates = [
            statistics.median(self._block(side, case, 3).seconds) for side in ("head", "base")
        ]
        return max(5, min(1000, math.ceil(self.config.base_block_s / max(estimates))))

    def compare_latency(self, case: Case) -> LatencyVsBase:
        """Pairs of blocks in a random order until a verdict, up to three times the pairs. A
        regression is confirmed in a fresh pair of worker processes before it is called one:
        two processes of the same code can differ by more than the tolerance (where a heap or
        a session lands), and pairing cancels the machine's drift, not that."""
        tolerance = get_spec(case.model).latency.tolerance_for(
            case.backend, case.precision, case.input_size, self.config.base_tolerance
        )
        shuffler = random.Random(f"{self.seed}-{case.id}")
        comparison, pairs, rounds = self._pairs_until_verdict(case, tolerance, shuffler)
        verdict = comparison.decided()
        confirmation = None
        if verdict == Verdict.REGRESSED:
            self.restart()
            confirmation, more, rounds = self._pairs_until_verdict(case, tolerance, shuffler)
            pairs += more
            if not confirmation.confirms_regression:
                verdict = Verdict.TOO_NOISY
        result = LatencyVsBase(case, comparison, verdict, tuple(pairs), rounds, confirmation)
        self.latency[case] = result
        return result

    def _pairs_until_verdict(
        self, case: Case, tolerance: float, shuffler: random.Random
    ) -> tuple[PairedComparison, list[Pair], int]:
        """A first look after half of ``base_pairs`` pairs, then one after every quarter as
        many again until a verdict, up to three times ``base_pairs``. A case is decided at a
        look only by an interval already inside the tolerance, or beyond it and significant, so
        looking early stops the clear cases without deciding the close ones sooner; a case that
        is almost decided takes a few more pairs, not as many again (why half: docs/base.md,
        part (h))."""
        self._prepare(case)
        rounds = self._rounds_per_block(case)
        planned = self.config.base_pairs
        first, step, most = max(2, planned // 2), max(1, planned // 4), 3 * planned
        pairs: list[Pair] = []
        target = first
        while True:
            while len(pairs) < target:
                head_first = shuffler.random() < 0.5
                order = ("head", "base") if head_first else ("base", "head")
                blocks = {side: self._block(side, case, rounds) for side in order}
                pairs.append(Pair(blocks["base"], blocks["head"], head_first))
            comparison = compare_pairs(pairs, tolerance, min_pairs=first)
            if comparison.verdict != Verdict.TOO_NOISY or target >= most:
                return comparison, pairs, rounds
            target = min(most, target + step)

    def restart(self) -> None:
        """Fresh worker processes on both sides (sessions are built again on first use)."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
        self._prepared.clear()

    def base_evaluation(self, case: Case) -> dict[str, Any]:
        """The base's per-image outcome of ``case`` on its own test split.

        Read back when this machine evaluated the same case under the same identity before
        (engine, model code, weights, data, versions: what ``identical to base`` trusts), at
        the same threads and calibration recipe, as a base or as a head
        (``keep_head_evaluation``); else asked of the base worker and stored. A base is fixed
        for the life of a pull request, so every rerun of its gate reuses it."""
        path = self._stored_path("evaluation", case, self.identity(case.model).base)
        reply = read_evaluation(path)
        if reply is None:
            reply = self._ask("base", {"op": "evaluate", "case": asdict(case)})
            atomic_write_bytes(path, json.dumps(reply).encode())
        else:
            self.reused_evaluations.append(case.id)
        return reply

    def keep_head_evaluation(self, case: Case, record: dict[str, Any]) -> None:
        """Store the head's own outcome of ``case`` under the head's identity, in the base
        worker's format: once this head is committed, the next change on top of it has it as
        its base and reads it back instead of evaluating it again."""
        path = self._stored_path("evaluation", case, self.identity(case.model).head)
        if read_evaluation(path) is None:
            atomic_write_bytes(path, json.dumps(record).encode())

    def _stored_path(self, kind: str, case: Case, identity: dict[str, Any]) -> Path:
        """Where a side's ``evaluation`` or ``memory`` figure of ``case`` is kept: keyed by the
        side's identity, the case, the machine, the threads and the calibration recipe; a
        memory peak also by memray's version and the harness that traces it."""
        fields: dict[str, Any] = {
            "identity": identity,
            "case": asdict(case),
            "machine": self.machine,
            "threads": self.config.threads,
            "calibration": asdict(self.config.calibration),
        }
        if kind == "memory":
            fields["tracer"] = {
                "memray": package_version("memray"),
                "harness": hashlib.sha256(WORKER.read_bytes()).hexdigest(),
            }
        text = json.dumps(fields, sort_keys=True, default=str)
        key = hashlib.sha256(text.encode()).hexdigest()[:24]
        prefix = {"evaluation": "side", "memory": "memory"}[kind]
        return self.config.cache_dir / "evaluations" / f"{prefix}-{key}.json"

    def compare_memory(self, case: Case) -> MemoryVsBase:
        """memray's peak of one batch through each side's warmed session, traced in the same
        way in both workers or read back. Judged at ``--medgate-base-tolerance``: unlike a
        stored ceiling, both figures are of this code on this machine.

        Bytes asked of the allocator, not a time: the same code, libraries, threads and machine
        give the same figure in every process, within ONNX Runtime's arena rounding (about 1 %,
        a fifth of the default tolerance), so a peak is kept under its side's identity and read
        back when this machine traced the same case under the same identity before, on either
        side (a base gated before as a head costs nothing). The harness that traces it is part
        of the key. Two identical sides (``--medgate-base-identical=measure``) are both traced:
        that is a check of the machine, which a figure read back could not fail. The sides to
        trace are prepared at once."""
        identity = self.identity(case.model)
        paths = {
            side: self._stored_path("memory", case, getattr(identity, side))
            for side in ("head", "base")
        }
        stored = {
            side: None if identity.identical else read_memory_peak(path)
            for side, path in paths.items()
        }
        self.reused_memory += [f"{case.id} ({side})" for side, peak in stored.items() if peak]
        self._prepare(case, tuple(side for side, peak in stored.items() if peak is None))
        peaks: dict[str, int] = {}
        for side, path in paths.items():
            peak = stored[side]
            if peak is None:
                peak = int(self._ask(side, {"op": "memory", "case": asdict(case)})["peak_bytes"])
                atomic_write_bytes(path, json.dumps({"peak_bytes": peak}).encode())
            peaks[side] = peak
        result = MemoryVsBase(case, peaks["head"], peaks["base"], self.config.base_tolerance)
        self.memory[case] = result
        return result

    def verdicts(self) -> dict[str, Verdict]:
        found: dict[str, Verdict] = {}
        for case, latency in self.latency.items():
            found[f"{case.id}:latency"] = latency.verdict
        for case, memory in self.memory.items():
            found[f"{case.id}:memory"] = memory.verdict
        for case, verdict in self.accuracy.items():
            found[f"{case.id}:accuracy"] = verdict
        for model, identity in self.identities.items():
            if identity.identical and self.config.base_identical == "skip":
                found[model] = Verdict.IDENTICAL
        return found

    def write(self) -> list[Path]:
        return []


#: What an evaluation reply (the worker's ``evaluate``) and a stored one hold.
EVALUATION_FIELDS = ("labels", "predictions", "positive_index", "positive_scores", "dataset")


def read_evaluation(path: Path) -> dict[str, Any] | None:
    """A stored evaluation, or None where there is none or it is not whole (a file from an
    older format or cut short): such a file is evaluated again and replaced, never trusted."""
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(record, dict) or any(name not in record for name in EVALUATION_FIELDS):
        return None
    labels, predictions = record["labels"], record["predictions"]
    if not isinstance(labels, list) or not isinstance(predictions, list):
        return None
    if len(labels) != len(predictions) or not isinstance(record["positive_index"], int):
        return None
    scores = record["positive_scores"]
    if scores is not None and (not isinstance(scores, list) or len(scores) != len(labels)):
        return None
    return record


def read_memory_peak(path: Path) -> int | None:
    """A stored memory peak, or None where there is none or it is not whole."""
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    peak = record.get("peak_bytes") if isinstance(record, dict) else None
    return peak if isinstance(peak, int) and not isinstance(peak, bool) and peak > 0 else None


def start_base(suite: SuiteConfig, seed: int, machine: str = "") -> BaseRun:
    """The run against ``suite.base``: the base materialized, no worker started yet.
    Raises ``BaseRevisionError`` naming the option and the fix."""
    assert suite.base is not None
    root, label = materialize(suite.base, suite.root, suite.cache_dir)
    python = suite.base_python or sys.executable
    if not Path(python).is_file():
        raise BaseRevisionError(
            f"--medgate-base-python={python}: no such interpreter; give the path of the Python "
            "whose environment runs the base"
        )
    return BaseRun(
        suite,
        head=SideSpec("head", suite.root, "working tree"),
        base=SideSpec("base", root, label, python),
        log_dir=Path(tempfile.mkdtemp(prefix="medgate-base-logs-")),
        seed=seed,
        machine=machine,
    )
