"""Every backend x precision computes what eager fp32 computes, within that precision's
tolerance, and the agreement check notices when not."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tiny_zoo
from medgate import AgreementPolicy, LogitTolerance
from medgate.backends import BuildContext
from medgate.core.matrix import Case, capability_table
from medgate.core.precision import CALIBRATION, PRECISIONS
from medgate.core.registry import create_model, get_backend
from medgate.gates.agreement import check
from medgate.gates.agreement.check import Agreement, tolerance_for

CPU_SUPPORTED = [
    (backend, precision)
    for backend, precision, device, verdict in capability_table(("cpu",))
    if verdict == "supported"
]


@pytest.fixture(scope="module")
def trained_like() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("tiny_cnn")
    model.train()
    with torch.no_grad():  # realistic BatchNorm statistics instead of the init's 0/1
        for _ in range(5):
            model(torch.randn(16, 1, 16, 16))
    return model.eval()


def context(case: Case, artifact_dir: Path) -> BuildContext:
    batches = tuple(torch.randn(4, 8, 1, case.input_size, case.input_size))
    return BuildContext(case, artifact_dir, threads=1, calibration=lambda: batches)


def test_the_table_offers_every_precision_on_cpu_somewhere() -> None:
    assert {precision for _, precision in CPU_SUPPORTED} == set(PRECISIONS)
    assert ("onnxruntime", "int8-static") in CPU_SUPPORTED
    assert ("compile", "int8-static") in CPU_SUPPORTED


@pytest.mark.parametrize(("backend", "precision"), CPU_SUPPORTED)
def test_backend_agrees_with_eager_within_its_precision(
    trained_like: torch.nn.Module, backend: str, precision: str, tmp_path: Path
) -> None:
    """bf16 runs here even where the gate skips it for speed: the code path must stay right."""
    case = Case("tiny_cnn", backend, precision, 16, 1, "cpu")
    session = get_backend(backend).prepare(
        copy.deepcopy(trained_like), torch.randn(1, 1, 16, 16), context(case, tmp_path)
    )
    batch = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        reference = trained_like(batch)
    agreement = Agreement.between(reference, session.run(session.place(batch)))
    assert agreement.failure(PRECISIONS[precision]) is None
    assert agreement.samples == 8
    single = session.run(session.place(batch[:1]))
    assert single.shape == (1, 2)
    if backend in ("torchscript", "onnxruntime"):
        assert session.artifact_bytes is not None
        assert session.artifact_bytes > 0
    if backend == "compile":
        assert session.compile_s is not None
        assert session.compile_s > 0


def test_a_compiled_session_compiles_each_graph_once_and_only_when_used(
    trained_like: torch.nn.Module, tmp_path: Path
) -> None:
    """``prepare`` compiles the graph of its case's batch, the batch-1 graph waits for the first
    batch of 1, and no real batch compiles again (``fail_on_recompile`` raises if one would: a
    graph traced on an expanded example is guarded on its zero stride, and was)."""
    case = Case("tiny_cnn", "compile", "fp32", 16, 16, "cpu")
    torch.compiler.reset()
    session = get_backend("compile").prepare(
        copy.deepcopy(trained_like), torch.randn(1, 1, 16, 16), context(case, tmp_path)
    )
    assert session.compile_s is not None
    prepared = session.compile_s
    with torch.compiler.set_stance("fail_on_recompile"):
        session.run(session.place(torch.randn(16, 1, 16, 16)))
    assert session.compile_s == prepared
    session.run(session.place(torch.randn(1, 1, 16, 16)))
    assert session.compile_s > prepared
    compiled = session.compile_s
    with torch.compiler.set_stance("fail_on_recompile"):
        for batch in (1, 16, 1):
            session.run(session.place(torch.randn(batch, 1, 16, 16)))
    assert session.compile_s == compiled


def test_a_compiled_graph_is_the_one_its_case_compiles_alone(
    trained_like: torch.nn.Module, tmp_path: Path
) -> None:
    """Two sessions of one model class at two sizes compile the same ``forward`` code object.
    The second graph must be the static one its case compiles in a process of its own: it runs
    its own size without compiling again, and a third size compiles anew. Under dynamo's
    automatic dynamic shapes (its default) the second session got a graph symbolic on the
    spatial axes instead, which here failed its own guards on its own size, and on the zoo's
    models ran a few per cent slower than the static one."""
    torch.compiler.reset()
    for size in (16, 24):
        case = Case("tiny_cnn", "compile", "fp32", size, 1, "cpu")
        session = get_backend("compile").prepare(
            copy.deepcopy(trained_like), torch.randn(1, 1, size, size), context(case, tmp_path)
        )
    with torch.compiler.set_stance("fail_on_recompile"):
        session.run(session.place(torch.randn(1, 1, 24, 24)))
        with pytest.raises(RuntimeError, match=r"[Rr]ecompil"):
            session.run(session.place(torch.randn(1, 1, 32, 32)))


#: A fresh process: compile tiny_cnn in fp32, build an int8-static compiled session, then
#: compile the fp32 graph again from scratch; prints inductor's FX-graph cache hits.
_COMPILE_AFTER_INT8_STATIC = """
import copy, sys
from pathlib import Path
import torch
from torch._dynamo.utils import counters
import tiny_zoo
from medgate.backends import BuildContext
from medgate.core.matrix import Case
from medgate.core.registry import create_model, get_backend

model = create_model("tiny_cnn").eval()
example = torch.randn(1, 1, 16, 16)
batches = tuple(torch.randn(2, 4, 1, 16, 16))
for precision in ("fp32", "int8-static", "fp32"):
    torch.compiler.reset()
    case = Case("tiny_cnn", "compile", precision, 16, 1, "cpu")
    build = BuildContext(case, Path(sys.argv[1]), threads=1, calibration=lambda: batches)
    get_backend("compile").prepare(copy.deepcopy(model), example, build)
print(counters["inductor"]["fxgraph_cache_hit"])
"""


def test_a_graph_compiled_after_an_int8_static_build_hits_the_cache_it_hit_before(
    tmp_path: Path,
) -> None:
    """torchao's X86 inductor quantizer installs inductor passes process-wide when imported;
    they are part of inductor's cache key. Unless the compile backend imports it before its
    first compile, the fp32 graph compiled after an int8-static build misses the entry the
    same graph wrote before it (the reach-in into dynamo's counters is this test's only)."""
    pytest.importorskip("torchao")
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_AFTER_INT8_STATIC, str(tmp_path)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
            "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        },
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "1", result.stdout


def test_each_onnx_precision_ships_its_own_graph(
    trained_like: torch.nn.Module, tmp_path: Path
) -> None:
    """fp16 halves the weights; int8's scales and zero points outweigh the tiny model's weights,
    so only "different" is asserted for it (on ResNet-18 it is 4x smaller: 11.2 vs 44.7 MB)."""
    sizes = {}
    for precision in ("fp32", "fp16", "int8-dynamic"):
        case = Case("tiny_cnn", "onnxruntime", precision, 16, 1, "cpu")
        session = get_backend("onnxruntime").prepare(
            copy.deepcopy(trained_like), torch.randn(1, 1, 16, 16), context(case, tmp_path)
        )
        sizes[precision] = session.artifact_bytes
    assert sizes["fp16"] < sizes["fp32"]
    assert sizes["int8-dynamic"] != sizes["fp32"]


@pytest.mark.parametrize("backend", ["onnxruntime", "compile"])
def test_static_int8_is_calibrated_once_per_run(
    trained_like: torch.nn.Module, backend: str, tmp_path: Path
) -> None:
    calls = []
    batches = tuple(torch.randn(2, 8, 1, 16, 16))

    def calibration() -> tuple[torch.Tensor, ...]:
        calls.append(1)
        return batches

    memo: dict[str, object] = {}
    for batch in (1, 16):
        case = Case("tiny_cnn", backend, "int8-static", 16, batch, "cpu")
        build = BuildContext(
            case, tmp_path, threads=1, weights_sha256="ab" * 32, calibration=calibration, memo=memo
        )
        get_backend(backend).prepare(copy.deepcopy(trained_like), torch.randn(1, 1, 16, 16), build)
    assert len(calls) == 1


def test_the_artifact_key_names_model_checkpoint_and_recipe(tmp_path: Path) -> None:
    case = Case("tiny_cnn", "onnxruntime", "int8-static", 16, 1, "cpu")
    build = BuildContext(case, tmp_path, threads=1, weights_sha256="0123456789abcdef" * 4)
    key = build.artifact_key("int8-static")
    assert key.startswith("tiny_cnn-16px-cpu-int8-static-0123456789ab-")
    assert key.endswith(CALIBRATION.key)
    other = BuildContext(case, tmp_path, threads=1, weights_sha256="f" * 64)
    assert other.artifact_key("int8-static") != key


def test_agreement_fails_on_perturbed_logits() -> None:
    reference = torch.tensor([[2.0, -1.0], [0.5, 1.5], [3.0, 0.0], [-1.0, 1.0]])
    assert Agreement.between(reference, reference + 1e-6).failure(PRECISIONS["fp32"]) is None
    drifted = reference + 0.05
    message = Agreement.between(reference, drifted).failure(PRECISIONS["fp32"])
    assert message is not None
    assert "max |delta logit|" in message
    assert Agreement.between(reference, drifted).failure(PRECISIONS["int8-static"]) is None
    flipped = reference.flip(1)
    message = Agreement.between(reference, flipped).failure(PRECISIONS["int8-static"])
    assert message is not None
    assert "top-1 agreement 0.0%" in message


def test_a_model_widens_the_logit_tolerance_only_of_the_cases_it_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    widening = LogitTolerance("*-bf16-*", 0.15, "reviewed: at bf16's limit", device="cpu")
    spec = dataclasses.replace(tiny_zoo.SPEC, agreement=AgreementPolicy((widening,)))
    monkeypatch.setattr(check, "get_spec", lambda name: spec)
    reference = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    near = Agreement.between(reference, reference + 0.25)  # 0.125 relative to max |logit| 2
    bf16 = Case("tiny_cnn", "eager", "bf16", 16, 64, "cpu")
    assert near.failure(PRECISIONS["bf16"]) is not None
    assert near.failure(tolerance_for(bf16)) is None
    assert tolerance_for(bf16).min_top1_agreement == PRECISIONS["bf16"].min_top1_agreement
    on_cuda = dataclasses.replace(bf16, device="cuda")
    assert tolerance_for(on_cuda) == PRECISIONS["bf16"]
    assert tolerance_for(dataclasses.replace(bf16, precision="fp16")) == PRECISIONS["fp16"]
    broken = Agreement.between(reference, reference + 0.5)
    assert broken.failure(tolerance_for(bf16)) is not None
    flipped = Agreement.between(reference, reference.flip(1))
    assert flipped.failure(tolerance_for(bf16)) is not None


def test_a_model_without_a_widening_keeps_its_precisions_tolerances() -> None:
    for precision in PRECISIONS:
        case = Case("tiny_cnn", "eager", precision, 16, 64, "cpu")
        assert tolerance_for(case) == PRECISIONS[precision]


def test_tolerances_loosen_from_fp32_to_int8() -> None:
    order = ["fp32", "fp16", "bf16", "int8-static"]
    deltas = [PRECISIONS[name].max_logit_delta for name in order]
    agreements = [PRECISIONS[name].min_top1_agreement for name in order]
    assert deltas == sorted(deltas)
    assert agreements == sorted(agreements, reverse=True)


def test_agreement_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="cannot be compared"):
        Agreement.between(torch.zeros(4, 2), torch.zeros(4, 3))
