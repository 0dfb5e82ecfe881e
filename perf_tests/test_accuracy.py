"""Every backend x precision's sensitivity, specificity, accuracy and AUROC on the test split,
against the in-run fp32 reference, the stored baseline (``baselines/accuracy/``) and the model's
floors. The run ends with a table of every case and of every finding."""

from __future__ import annotations

import pytest

from medgate.backends import Session
from medgate.core.matrix import Case
from medgate.workspace import Workspace

pytestmark = [pytest.mark.accuracy, pytest.mark.medgate(batch="accuracy")]


def test_accuracy_holds(
    medgate_case: Case, medgate_session: Session, medgate_workspace: Workspace
) -> None:
    result = medgate_workspace.check_accuracy(medgate_case, medgate_session)
    failures = [
        f"{finding.gate} {finding.metric}: {finding.verdict} ({finding.detail})"
        for finding in result.failures
    ]
    assert not failures, f"{medgate_case.id}: " + "; ".join(failures)
