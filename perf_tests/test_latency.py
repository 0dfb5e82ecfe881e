"""Timed benchmarks: latency (batch 1), throughput (batch N), and the stages of batch 1.

With ``--medgate-base`` each case is timed against the base revision instead, in paired blocks
of two worker processes (``medgate.base``); without it pytest-benchmark times it here and the
rounds are compared with this machine's stored baseline.
"""

from __future__ import annotations

import pytest

from medgate.core.matrix import Case
from medgate.core.verdict import require
from medgate.gates.latency.bench import time_case, time_stages
from medgate.stage_sessions import stage_sessions, why_no_stages
from medgate.workspace import Workspace

pytestmark = pytest.mark.latency


def test_latency(
    request: pytest.FixtureRequest, medgate_case: Case, medgate_workspace: Workspace
) -> None:
    _time(request, medgate_case, medgate_workspace)


@pytest.mark.throughput
@pytest.mark.medgate(batch="throughput")
def test_throughput(
    request: pytest.FixtureRequest, medgate_case: Case, medgate_workspace: Workspace
) -> None:
    _time(request, medgate_case, medgate_workspace)


@pytest.mark.stages
def test_stages(medgate_case: Case, medgate_workspace: Workspace) -> None:
    workspace, case = medgate_workspace, medgate_case
    if workspace.base is not None:
        pytest.skip("stage timings are compared with stored baselines only, not with the base")
    reason = why_no_stages(workspace, case.model)
    if reason is not None:
        pytest.skip(reason)
    features, head = stage_sessions(workspace, case)
    results = time_stages(
        case,
        workspace.raw_images(case.model, case.batch),
        workspace.preprocessor(case.model, case.input_size),
        features,
        head,
        workspace.latency,
        workspace.reference_workload(case.backend, case.device),
    )
    require(case.id, [problem for result in results if result for problem in result.problems()])


def _time(request: pytest.FixtureRequest, case: Case, workspace: Workspace) -> None:
    if workspace.base is not None:
        require(case.id, workspace.base.compare_latency(case).problems())
        return
    # Fetched here, not as arguments: against the base, both sides are built in the workers.
    session = request.getfixturevalue("medgate_session")
    result = time_case(
        request.getfixturevalue("benchmark"),
        case,
        session,
        request.getfixturevalue("medgate_inputs"),
        workspace.facts(case.model, case.input_size),
        workspace.latency,
        workspace.reference_workload(case.backend, case.device),
    )
    require(case.id, result.problems() if result is not None else [])
