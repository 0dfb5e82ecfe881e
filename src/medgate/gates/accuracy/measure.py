"""What the accuracy gate measures for a case: its evaluation over the test split, judged
against the in-run eager fp32 reference, the stored baseline and the model's floors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from medgate.backends.base import Session
from medgate.core.matrix import Case
from medgate.core.registry import ModelSpec
from medgate.gates.accuracy.checks import RunIdentity
from medgate.gates.accuracy.metrics import Evaluation
from medgate.gates.accuracy.run import AccuracyLedger, CaseAccuracy
from medgate.gates.accuracy.store import DatasetIdentity


class AccuracyResources(Protocol):
    """What the gate reads from the run (``medgate.workspace.Workspace`` provides it)."""

    accuracy: AccuracyLedger
    reference_evaluation: Callable[[str, int, int], Evaluation]

    def spec(self, model: str) -> ModelSpec: ...

    def evaluate(
        self,
        case: Case,
        run: Callable[[torch.Tensor], torch.Tensor],
        content_key: str | None = None,
    ) -> Evaluation: ...

    def dataset_identity(self, model: str) -> DatasetIdentity: ...

    def run_identity(self, model: str) -> RunIdentity: ...

    def base_evaluation(self, case: Case, head: Evaluation) -> Evaluation | None:
        """The case on the base revision, None without ``--medgate-base``; ``head`` is this
        run's evaluation of it."""
        ...


def is_reference(case: Case) -> bool:
    return (case.backend, case.precision, case.device) == ("eager", "fp32", "cpu")


def measure_accuracy(resources: AccuracyResources, case: Case, session: Session) -> CaseAccuracy:
    """Evaluate ``case`` on the test split and judge it against every accuracy check."""
    reference = resources.reference_evaluation(case.model, case.input_size, case.batch)
    if is_reference(case):
        candidate = reference
    else:
        # The session decides its own autograd mode: inputs made under inference_mode here
        # would fail a compiled graph's guards and recompile it for every case.
        candidate = resources.evaluate(
            case, lambda batch: session.run(session.place(batch)), session.content_key()
        )
    return resources.accuracy.judge(
        case,
        resources.spec(case.model),
        resources.dataset_identity(case.model),
        resources.run_identity(case.model),
        None if is_reference(case) else reference,
        candidate,
        resources.base_evaluation(case, candidate),
    )
