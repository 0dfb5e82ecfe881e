"""Every backend x precision's sensitivity, specificity, accuracy and AUROC on the test split,
against the in-run fp32 reference, the stored baseline (``baselines/accuracy/``) and the model's
floors. The run ends with a table of every case and of every finding."""

from __future__ import annotations

import pytest

from medgate.backends import Session
from medgate.core.matrix import Case
from medgate.core.verdict import require
from medgate.gates.accuracy.measure import measure_accuracy
from medgate.workspace import Workspace

pytestmark = [pytest.mark.accuracy, pytest.mark.medgate(batch="accuracy")]


def test_accuracy_holds(
    medgate_case: Case, medgate_session: Session, medgate_workspace: Workspace
) -> None:
    result = measure_accuracy(medgate_workspace, medgate_case, medgate_session)
    require(medgate_case.id, result.problems())
