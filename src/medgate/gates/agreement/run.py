"""One run's agreement gate: every case's logits against eager fp32's on the same images. It
stores nothing: the reference is measured in the same run, and the tolerances are the
precision's (``medgate.core.precision``), widened only where a model declares it
(``ModelSpec.agreement``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from medgate.core.logits import require_finite
from medgate.core.matrix import Case
from medgate.core.verdict import Verdict
from medgate.gates.agreement.check import Agreement, tolerance_for


class AgreementLedger:
    lane = "agreement"

    def __init__(self, update: bool) -> None:
        self.update = update
        self.notes: list[str] = []
        self.results: dict[Case, Agreement] = {}

    def judge(self, case: Case, reference: torch.Tensor, candidate: torch.Tensor) -> Agreement:
        agreement = Agreement.between(reference, candidate)
        self.results[case] = agreement
        return agreement

    def verdicts(self) -> dict[str, Verdict]:
        return {
            case.id: Verdict.OK
            if agreement.failure(tolerance_for(case)) is None
            else Verdict.BEYOND_LIMIT
            for case, agreement in self.results.items()
        }

    def write(self) -> list[Path]:
        return []


class AgreementResources(Protocol):
    agreement: AgreementLedger
    reference_logits: Callable[[str, int, int], torch.Tensor]


def measure_agreement(
    resources: AgreementResources, case: Case, candidate: torch.Tensor
) -> list[str]:
    """Compare ``candidate`` logits with eager fp32's on the same inputs; what fails the test."""
    require_finite(candidate.float().cpu(), case.id)
    reference = resources.reference_logits(case.model, case.input_size, case.batch)
    agreement = resources.agreement.judge(case, reference, candidate)
    failure = agreement.failure(tolerance_for(case))
    return [] if failure is None else [failure]
