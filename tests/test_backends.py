"""Each backend computes what eager fp32 computes, and the agreement check notices when not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgate.agreement import Agreement
from medgate.backends import BuildContext
from medgate.matrix import Case
from medgate.precision import PRECISIONS
from medgate.registry import create_model, get_backend


@pytest.fixture(scope="module")
def trained_like() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("tiny_cnn")
    model.train()
    with torch.no_grad():  # realistic BatchNorm statistics instead of the init's 0/1
        for _ in range(5):
            model(torch.randn(16, 1, 16, 16))
    return model.eval()


@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnxruntime"])
@pytest.mark.parametrize("size", [16, 32])
def test_backend_agrees_with_eager(
    trained_like: torch.nn.Module, backend: str, size: int, tmp_path: Path
) -> None:
    case = Case("tiny_cnn", backend, "fp32", size, 1, "cpu")
    example = torch.randn(1, 1, size, size)
    session = get_backend(backend).prepare(
        trained_like, example, BuildContext(case, tmp_path, threads=1)
    )
    batch = torch.randn(8, 1, size, size)
    with torch.no_grad():
        reference = trained_like(batch)
    agreement = Agreement.between(reference, session.run(session.place(batch)))
    assert agreement.failure(PRECISIONS["fp32"]) is None
    assert agreement.samples == 8
    if backend != "eager":
        assert session.artifact_bytes is not None
        assert session.artifact_bytes > 0


def test_agreement_fails_on_perturbed_logits() -> None:
    reference = torch.tensor([[2.0, -1.0], [0.5, 1.5], [3.0, 0.0], [-1.0, 1.0]])
    assert Agreement.between(reference, reference + 1e-6).failure(PRECISIONS["fp32"]) is None
    drifted = reference + 0.05
    message = Agreement.between(reference, drifted).failure(PRECISIONS["fp32"])
    assert message is not None
    assert "max |delta logit|" in message
    flipped = reference.flip(1)
    message = Agreement.between(reference, flipped).failure(PRECISIONS["fp32"])
    assert message is not None
    assert "top-1 agreement 0.0%" in message


def test_agreement_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="cannot be compared"):
        Agreement.between(torch.zeros(4, 2), torch.zeros(4, 3))
