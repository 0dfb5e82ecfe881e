"""Every backend's logits against eager fp32 on CPU, on a fixed batch of real test images."""

from __future__ import annotations

import pytest
import torch

from medgate.agreement import Agreement
from medgate.backends import Session
from medgate.matrix import Case
from medgate.precision import PRECISIONS
from medgate.workspace import Workspace

pytestmark = [pytest.mark.agreement, pytest.mark.medgate(batch="agreement")]


def test_agrees_with_eager_fp32(
    medgate_case: Case,
    medgate_session: Session,
    medgate_inputs: torch.Tensor,
    medgate_workspace: Workspace,
) -> None:
    if (medgate_case.backend, medgate_case.precision, medgate_case.device) == (
        "eager",
        "fp32",
        "cpu",
    ):
        pytest.skip("eager fp32 on cpu is the reference itself")
    reference = medgate_workspace.reference_logits(
        medgate_case.model, medgate_case.input_size, medgate_case.batch
    )
    candidate = medgate_session.run(medgate_session.place(medgate_inputs))
    agreement = Agreement.between(reference, candidate)
    failure = agreement.failure(PRECISIONS[medgate_case.precision])
    assert failure is None, f"{medgate_case.id}: {failure}"
