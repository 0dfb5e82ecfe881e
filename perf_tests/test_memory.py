"""Peak memory per case, measured by memray through pytest-memray's ``limit_memory`` marker,
whose limit is the case's stored ceiling (``baselines/memory/``). Never in the timed tests:
memray's tracing would distort their rounds.

What the measured region holds: the test function's body only (fixtures run outside it). For
``inference`` that is one batch through a session that is already built and warmed up, so the
figure is activations, workspace and output; for ``session`` it is building the session from the
trained model: the model's copy, export, quantization and calibration, the runtime's session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from medgate.backends import Session
from medgate.core.device import cuda_peak_since, start_cuda_peak
from medgate.core.matrix import Case
from medgate.core.registry import get_backend
from medgate.core.verdict import require
from medgate.workspace import Workspace

pytestmark = pytest.mark.memory


@pytest.fixture
def warm_batch(medgate_case: Case, medgate_session: Session, medgate_inputs: torch.Tensor) -> Any:
    """The placed batch, after the session's warm-up calls (lazy allocations happen there)."""
    placed = medgate_session.place(medgate_inputs)
    for _ in range(medgate_session.warmup_calls):
        medgate_session.run(placed)
    medgate_session.synchronize()
    return placed


@pytest.mark.medgate(batch="throughput", memory="inference")
def test_inference_memory(
    medgate_case: Case,
    medgate_session: Session,
    warm_batch: Any,
    medgate_workspace: Workspace,
    record_property: Callable[[str, object], None],
) -> None:
    resident = start_cuda_peak() if medgate_case.device == "cuda" else 0
    medgate_session.run(warm_batch)
    medgate_session.synchronize()
    record_property("artifact_bytes", medgate_session.artifact_bytes)
    if medgate_workspace.base is not None:
        require(medgate_case.id, medgate_workspace.base.compare_memory(medgate_case).problems())
    if medgate_case.device == "cuda":
        facts = medgate_workspace.facts(medgate_case.model, medgate_case.input_size)
        memory = medgate_workspace.memory
        observed = memory.observe(
            medgate_case, "cuda_peak", cuda_peak_since(resident), facts.param_bytes, None
        )
        require(medgate_case.id, memory.problems(observed))


@pytest.fixture
def session_inputs(medgate_case: Case, medgate_workspace: Workspace) -> None:
    """Everything a build reads, loaded before the measured region: the trained model, the
    example batch, the calibration images and the modules the build imports."""
    get_backend(medgate_case.backend).preload(medgate_case)
    medgate_workspace.trained_model(medgate_case.model, medgate_case.input_size)
    medgate_workspace.inputs(medgate_case.model, medgate_case.input_size, 1)
    medgate_workspace.calibration_batches(medgate_case.model, medgate_case.input_size)


@pytest.mark.medgate(batch="latency", memory="session")
@pytest.mark.usefixtures("session_inputs")
def test_session_memory(
    medgate_case: Case,
    medgate_workspace: Workspace,
    record_property: Callable[[str, object], None],
) -> None:
    with medgate_workspace.fresh_session(medgate_case) as session:
        record_property("artifact_bytes", session.artifact_bytes)
