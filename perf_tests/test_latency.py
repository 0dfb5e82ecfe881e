"""Timed benchmarks: latency (batch 1), throughput (batch N), and the stages of batch 1."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medgate.backends import Session
from medgate.core.matrix import Case
from medgate.gates.latency.bench import time_case, time_stages
from medgate.workspace import Workspace

pytestmark = pytest.mark.latency


def test_latency(
    benchmark: Any,
    medgate_case: Case,
    medgate_session: Session,
    medgate_inputs: torch.Tensor,
    medgate_workspace: Workspace,
) -> None:
    _time(benchmark, medgate_case, medgate_session, medgate_inputs, medgate_workspace)


@pytest.mark.medgate(batch="throughput")
def test_throughput(
    benchmark: Any,
    medgate_case: Case,
    medgate_session: Session,
    medgate_inputs: torch.Tensor,
    medgate_workspace: Workspace,
) -> None:
    _time(benchmark, medgate_case, medgate_session, medgate_inputs, medgate_workspace)


@pytest.mark.stages
def test_stages(medgate_case: Case, medgate_workspace: Workspace) -> None:
    workspace, case = medgate_workspace, medgate_case
    reason = workspace.why_no_stages(case.model)
    if reason is not None:
        pytest.skip(reason)
    features, head = workspace.stage_sessions(case)
    results = time_stages(
        case,
        workspace.raw_images(case.model, case.batch),
        workspace.preprocessor(case.model, case.input_size),
        features,
        head,
        workspace.latency,
        workspace.reference_workload(case.backend, case.device),
    )
    workspace.enforce(*results)


def _time(
    benchmark: Any, case: Case, session: Session, inputs: torch.Tensor, workspace: Workspace
) -> None:
    result = time_case(
        benchmark,
        case,
        session,
        inputs,
        workspace.facts(case.model, case.input_size),
        workspace.latency,
        workspace.reference_workload(case.backend, case.device),
    )
    workspace.enforce(result)
