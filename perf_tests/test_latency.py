"""Timed benchmarks: one latency test (batch 1) and one throughput test (batch N) per case."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medgate.backends import Session
from medgate.bench import time_case
from medgate.matrix import Case
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


def _time(
    benchmark: Any, case: Case, session: Session, inputs: torch.Tensor, workspace: Workspace
) -> None:
    time_case(benchmark, case, session, inputs, workspace.facts(case.model, case.input_size))
