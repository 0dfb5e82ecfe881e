"""Every backend x precision's logits against eager fp32, on a fixed batch of real test images:
the first test images, whose logits the accuracy lane's evaluation of the same case (same
session, same batch) has already computed or read back when it ran; else they are run here.

Tolerances are per precision, in ``medgate.core.precision``; the run ends with a table of every
case.
"""

from __future__ import annotations

import pytest

from medgate.backends import Session
from medgate.core.matrix import Case
from medgate.core.verdict import require
from medgate.gates.agreement.run import measure_agreement
from medgate.workspace import Workspace

pytestmark = [pytest.mark.agreement, pytest.mark.medgate(batch="agreement")]


def test_agrees_with_eager_fp32(
    medgate_case: Case,
    medgate_session: Session,
    medgate_workspace: Workspace,
) -> None:
    if (medgate_case.backend, medgate_case.precision, medgate_case.device) == (
        "eager",
        "fp32",
        "cpu",
    ):
        pytest.skip("eager fp32 on cpu is the reference itself")
    candidate = medgate_workspace.agreement_logits(medgate_case, medgate_session)
    require(medgate_case.id, measure_agreement(medgate_workspace, medgate_case, candidate))
