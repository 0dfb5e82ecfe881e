"""Peak memory per case, measured by memray through pytest-memray's ``limit_memory`` marker,
whose limit is the case's stored ceiling (``baselines/memory/``). Never in the timed tests:
memray's tracing would distort their rounds.

What the measured region holds: the test function's body only (fixtures run outside it). For
``inference`` that is one batch through a session that is already built and warmed up, so the
figure is activations, workspace and output; for ``session`` it is building the session from the
trained model: the model's copy, export, quantization and calibration, the runtime's session.

Against a base revision, a CPU case's ``inference`` figure is the head worker's memray trace of
the same batch (the one compared with the base), held to the same ceiling by the memory ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medgate.backends import Session
from medgate.core.device import cuda_peak_since, start_cuda_peak
from medgate.core.matrix import Case
from medgate.core.registry import get_backend
from medgate.core.verdict import require
from medgate.gates.memory.markers import head_worker_traces_inference
from medgate.workspace import Workspace

pytestmark = pytest.mark.memory


@pytest.fixture
def warm_session(medgate_case: Case, medgate_workspace: Workspace) -> tuple[Session, Any] | None:
    """The session and its placed batch, after the session's warm-up calls (lazy allocations
    happen there); None where the head's worker traces the batch instead, so nothing is built
    here for it."""
    if head_worker_traces_inference(medgate_case, medgate_workspace.base is not None):
        return None
    model, size, batch = medgate_case.model, medgate_case.input_size, medgate_case.batch
    session = medgate_workspace.session(medgate_case)
    placed = session.place(medgate_workspace.inputs(model, size, batch))
    for _ in range(session.warmup_calls):
        session.run(placed)
    session.synchronize()
    return session, placed


@pytest.mark.medgate(batch="throughput", memory="inference")
def test_inference_memory(
    medgate_case: Case,
    warm_session: tuple[Session, Any] | None,
    medgate_workspace: Workspace,
    record_property: Callable[[str, object], None],
) -> None:
    base, memory = medgate_workspace.base, medgate_workspace.memory
    if warm_session is None:
        assert base is not None
        against = base.compare_memory(medgate_case)
        facts = medgate_workspace.facts(medgate_case.model, medgate_case.input_size)
        observed = memory.observe(
            medgate_case,
            "inference",
            against.head_bytes,
            facts.param_bytes,
            None,
            traced_in="the head's worker, one batch (the trace compared with the base)",
        )
        require(medgate_case.id, against.problems() + memory.problems(observed))
        return
    session, placed = warm_session
    resident = start_cuda_peak() if medgate_case.device == "cuda" else 0
    session.run(placed)
    session.synchronize()
    record_property("artifact_bytes", session.artifact_bytes)
    if base is not None:
        require(medgate_case.id, base.compare_memory(medgate_case).problems())
    if medgate_case.device == "cuda":
        facts = medgate_workspace.facts(medgate_case.model, medgate_case.input_size)
        observed = memory.observe(
            medgate_case, "cuda_peak", cuda_peak_since(resident), facts.param_bytes, None
        )
        require(medgate_case.id, memory.problems(observed))


@pytest.fixture
def session_inputs(medgate_case: Case, medgate_workspace: Workspace) -> None:
    """Everything a build reads or uses for the first time, done before the measured region:
    the trained model, the example batch, the calibration images, the modules the build imports
    and one untraced build of the same case. A library's first use in a process (oneDNN's
    kernels JIT-compiled for this input's shapes, onnx's shape inference, the thread pools) is
    live at the build's peak, and which of them a process has already paid for depends on what
    ran before it (docs/memory.md)."""
    get_backend(medgate_case.backend).preload(medgate_case)
    medgate_workspace.trained_model(medgate_case.model, medgate_case.input_size)
    medgate_workspace.inputs(medgate_case.model, medgate_case.input_size, 1)
    medgate_workspace.calibration_batches(medgate_case.model, medgate_case.input_size)
    with medgate_workspace.fresh_session(medgate_case):
        pass


@pytest.mark.medgate(batch="latency", memory="session")
@pytest.mark.usefixtures("session_inputs")
def test_session_memory(
    medgate_case: Case,
    medgate_workspace: Workspace,
    record_property: Callable[[str, object], None],
) -> None:
    with medgate_workspace.fresh_session(medgate_case) as session:
        record_property("artifact_bytes", session.artifact_bytes)
