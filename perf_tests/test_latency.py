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
    facts = medgate_workspace.facts(medgate_case.model, medgate_case.input_size)
    time_case(benchmark, medgate_case, medgate_session, medgate_inputs, facts)


@pytest.mark.medgate(batch="throughput")
def test_throughput(
    benchmark: Any,
    medgate_case: Case,
    medgate_session: Session,
    medgate_inputs: torch.Tensor,
    medgate_workspace: Workspace,
) -> None:
    facts = medgate_workspace.facts(medgate_case.model, medgate_case.input_size)
    time_case(benchmark, medgate_case, medgate_session, medgate_inputs, facts)
