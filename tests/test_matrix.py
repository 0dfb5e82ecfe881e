from __future__ import annotations

import pytest
import torch

from medgate.core import machine
from medgate.core.matrix import (
    Case,
    MatrixSpec,
    build_cases,
    capability_table,
    select_sizes,
    skip_reason,
)
from medgate.core.precision import PRECISIONS
from medgate.core.registry import list_backends


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
    # sizes x backends x precisions x devices
    assert len(cases) == 2 * len(list_backends()) * len(PRECISIONS) * 2
    assert {c.batch for c in cases} == {4}
    assert {c.input_size for c in cases} == {32, 16}


def test_options_narrow_the_matrix() -> None:
    cases = build_cases(
        spec(
            backends=("onnx*",),
            precisions=("fp32", "int8-*"),
            input_sizes=("largest",),
            devices=("cpu",),
        )
    )
    assert [c.id for c in cases] == [
        "tiny_cnn-onnxruntime-fp32-32-bs1-cpu",
        "tiny_cnn-onnxruntime-int8-dynamic-32-bs1-cpu",
        "tiny_cnn-onnxruntime-int8-static-32-bs1-cpu",
    ]


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


@pytest.mark.parametrize(
    ("backend", "precision", "device", "reason"),
    [
        ("eager", "fp16", "cpu", "eager/fp16/cpu: fp16 needs CUDA*"),
        ("onnxruntime", "bf16", "cpu", "*onnxruntime has no bf16 Conv kernels*"),
        ("torchscript", "int8-static", "cpu", "*TorchScript has no maintained static int8*"),
        ("tensorrt", "fp32", "cpu", "tensorrt does not run on cpu"),
    ],
)
def test_unsupported_combinations_say_why(
    backend: str, precision: str, device: str, reason: str
) -> None:
    said = skip_reason(Case("tiny_cnn", backend, precision, 16, 1, device))
    assert said is not None
    pytest.LineMatcher([said]).fnmatch_lines([reason])


def _fake_cpu(*flags: str) -> machine.Cpu:
    return machine.Cpu("AuthenticAMD", "AMD EPYC", 0x1A, 2, 0, frozenset(flags))


def test_bf16_on_a_cpu_without_native_bf16_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu", lambda: _fake_cpu("avx2", "fma"))
    said = skip_reason(Case("tiny_cnn", "eager", "bf16", 16, 1, "cpu"))
    assert said is not None
    assert "AMD EPYC (zen5, family 26 model 2) has no native bf16 instructions" in said
    monkeypatch.setattr(machine, "cpu", lambda: _fake_cpu("avx512f", "avx512_bf16"))
    assert skip_reason(Case("tiny_cnn", "eager", "bf16", 16, 1, "cpu")) is None


def test_the_capability_table_covers_every_combination() -> None:
    table = capability_table()
    assert len(table) == len(list_backends()) * len(PRECISIONS) * 2
    assert all(verdict for *_, verdict in table)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_cases_skip_without_a_gpu() -> None:
    assert skip_reason(Case("tiny_cnn", "eager", "fp32", 16, 1, "cuda")) == (
        "CUDA is not available on this machine"
    )


def test_cpu_cases_run() -> None:
    for backend in ("eager", "torchscript", "compile", "onnxruntime"):
        assert skip_reason(Case("tiny_cnn", backend, "fp32", 16, 1, "cpu")) is None
