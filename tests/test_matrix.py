from __future__ import annotations

import pytest
import torch

from medgate.matrix import Case, MatrixSpec, build_cases, select_sizes, skip_reason


def spec(**overrides: object) -> MatrixSpec:
    fields: dict[str, object] = {
        "models": ("tiny_cnn",),
        "backends": ("*",),
        "precisions": ("*",),
        "input_sizes": ("all",),
        "devices": ("cpu", "cuda"),
    }
    fields.update(overrides)
    return MatrixSpec(**fields)  # type: ignore[arg-type]


def test_case_id_is_readable() -> None:
    case = Case("brain_mri_mobilenet_v2", "onnxruntime", "fp32", 224, 1, "cpu")
    assert case.id == "brain_mri_mobilenet_v2-onnxruntime-fp32-224-bs1-cpu"


def test_build_cases_spans_every_axis() -> None:
    cases = build_cases(spec(), batch=4)
    assert len(cases) == 2 * 3 * 1 * 2  # sizes x backends x precisions x devices
    assert {c.batch for c in cases} == {4}
    assert {c.input_size for c in cases} == {32, 16}


def test_options_narrow_the_matrix() -> None:
    cases = build_cases(spec(backends=("onnx*",), input_sizes=("largest",), devices=("cpu",)))
    assert [c.id for c in cases] == ["tiny_cnn-onnxruntime-fp32-32-bs1-cpu"]


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (("all",), [224, 192, 160]),
        (("largest",), [224]),
        (("smallest", 192), [192, 160]),
        ((100,), []),
    ],
)
def test_select_sizes(wanted: tuple[int | str, ...], expected: list[int]) -> None:
    assert select_sizes((224, 192, 160), wanted) == expected


def test_unsupported_combinations_say_why() -> None:
    reason = skip_reason(Case("tiny_cnn", "onnxruntime", "fp32", 16, 1, "cuda"))
    assert reason is not None
    assert "CPU execution provider only" in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_cases_skip_without_a_gpu() -> None:
    assert skip_reason(Case("tiny_cnn", "eager", "fp32", 16, 1, "cuda")) == (
        "CUDA is not available on this machine"
    )


def test_cpu_cases_run() -> None:
    for backend in ("eager", "torchscript", "onnxruntime"):
        assert skip_reason(Case("tiny_cnn", backend, "fp32", 16, 1, "cpu")) is None
