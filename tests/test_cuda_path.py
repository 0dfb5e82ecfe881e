"""The CUDA lane's code paths, checked without a GPU: skip reasons, providers, synchronized
timing and the peak-memory figure. (The lane itself runs with ``-m cuda`` on a machine with one.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from medgate.backends import BuildContext, Session
from medgate.core.facts import ModelFacts
from medgate.core.fingerprint import Fingerprint
from medgate.core.matrix import Case, skip_reason
from medgate.core.registry import get_backend
from medgate.gates.latency.bench import time_case
from medgate.gates.latency.reference_workload import ReferenceWorkload
from medgate.gates.latency.run import LatencyLedger


class FakeStats:
    def __init__(self) -> None:
        self.data: list[float] = []

    def update(self, seconds: float) -> None:
        self.data.append(seconds)


class FakeBenchmark:
    """pytest-benchmark's fixture, reduced to what ``time_case`` uses."""

    def __init__(self) -> None:
        self.group = ""
        self.extra_info: dict[str, Any] = {}
        self.stats: SimpleNamespace | None = None

    def pedantic(self, target: Callable[[], None], setup: Callable[[], None], rounds: int) -> None:
        self.stats = SimpleNamespace(stats=FakeStats())
        for _ in range(rounds):
            setup()
            started = time.perf_counter()
            target()
            self.stats.stats.update(time.perf_counter() - started)


def timing_tools(tmp_path: Path, device: str) -> tuple[LatencyLedger, ReferenceWorkload]:
    """A ledger with no baselines (five rounds a measurement) and a reference workload whose
    runs are not logged with the case's."""
    machine = Fingerprint({"cpu_model": "test", "usable_cores": 2, "threads": 2})
    ledger = LatencyLedger(tmp_path, tmp_path, False, machine, max_time=1e-6, min_rounds=5)
    return ledger, ReferenceWorkload(CountingSession(device, []))


class CountingSession(Session):
    def __init__(self, device: str, log: list[str]) -> None:
        super().__init__(device)
        self.log = log

    def place(self, batch: torch.Tensor) -> Any:
        return batch

    def run(self, placed: Any) -> torch.Tensor:
        self.log.append("run")
        return placed

    def synchronize(self) -> None:
        self.log.append("sync")
        super().synchronize()


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"synchronize": 0, "reset_peak": 0}

    def synchronize() -> None:
        calls["synchronize"] += 1

    def reset_peak_memory_stats() -> None:
        calls["reset_peak"] += 1

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset_peak_memory_stats)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 123_456_789)
    # Another case's session still on the GPU: not this case's memory.
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 100_000_000)
    return calls


def test_cuda_timing_synchronizes_every_round_and_records_peak_memory(
    fake_gpu: dict[str, int], tmp_path: Path
) -> None:
    log: list[str] = []
    session = CountingSession("cuda", log)
    benchmark = FakeBenchmark()
    case = Case("tiny_cnn", "eager", "fp16", 16, 1, "cuda")
    time_case(
        benchmark,
        case,
        session,
        torch.zeros(1, 1, 16, 16),
        ModelFacts(10, 40, 1000),
        *timing_tools(tmp_path, "cuda"),
    )
    timed = log[-10:]
    assert timed == ["run", "sync"] * 5  # no round ends before the GPU has finished
    assert fake_gpu["reset_peak"] == 1  # after warm-up, so the figure is inference only
    assert benchmark.extra_info["cuda_peak_bytes"] == 23_456_789  # above what was resident
    assert benchmark.extra_info["device"] == "cuda"
    assert benchmark.extra_info["first_call_s"] >= 0
    assert benchmark.group == "tiny_cnn 16px bs1 cuda"


def test_cpu_timing_records_no_gpu_memory(tmp_path: Path) -> None:
    benchmark = FakeBenchmark()
    case = Case("tiny_cnn", "eager", "fp32", 16, 1, "cpu")
    session = CountingSession("cpu", [])
    tools = timing_tools(tmp_path, "cpu")
    time_case(benchmark, case, session, torch.zeros(1), ModelFacts(1, 4, 1), *tools)
    assert "cuda_peak_bytes" not in benchmark.extra_info


@pytest.mark.usefixtures("fake_gpu")
@pytest.mark.parametrize(
    ("backend", "precision", "expected"),
    [
        ("eager", "fp16", None),
        ("compile", "bf16", None),
        ("torchscript", "fp32", None),
        ("eager", "int8-dynamic", "*dynamic quantization has CPU*kernels only"),
        ("compile", "int8-static", "*X86InductorQuantizer targets x86 CPUs"),
        ("onnxruntime", "int8-dynamic", "*ConvInteger*"),
        ("tensorrt", "bf16", "*offers fp32, fp16 and int8"),
    ],
)
def test_cuda_capabilities_with_a_gpu_present(
    backend: str, precision: str, expected: str | None
) -> None:
    reason = skip_reason(Case("tiny_cnn", backend, precision, 16, 1, "cuda"))
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        pytest.LineMatcher([reason]).fnmatch_lines([expected])


@pytest.mark.usefixtures("fake_gpu")
@pytest.mark.parametrize(
    ("backend", "provider"),
    [("onnxruntime", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")],
)
def test_a_cpu_only_onnxruntime_names_the_missing_provider_and_the_fix(
    backend: str, provider: str
) -> None:
    import onnxruntime

    if provider in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has {provider}")
    reason = skip_reason(Case("tiny_cnn", backend, "fp32", 16, 1, "cuda"))
    assert reason is not None
    assert f"no {provider}" in reason
    assert "'.[cuda]'" in reason


def test_tensorrt_builds_fp16_and_int8_from_the_right_graph(tmp_path: Path) -> None:
    backend = get_backend("tensorrt")
    assert backend.graph_precision("fp16") == "fp32"  # type: ignore[attr-defined]
    assert backend.graph_precision("int8-static") == "int8-static"  # type: ignore[attr-defined]
    for precision, flag in (("fp16", "trt_fp16_enable"), ("int8-static", "trt_int8_enable")):
        case = Case("tiny_cnn", "tensorrt", precision, 16, 1, "cuda")
        providers = backend.execution_providers(  # type: ignore[attr-defined]
            BuildContext(case, tmp_path, threads=1)
        )
        name, options = providers[0]
        assert name == "TensorrtExecutionProvider"
        assert options[flag] is True
        assert providers[1:] == [STRICT_CUDA_EP, "CPUExecutionProvider"]


STRICT_CUDA_EP = ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0})


def test_onnxruntime_on_cuda_runs_fp32_without_tf32(tmp_path: Path) -> None:
    backend = get_backend("onnxruntime")
    case = Case("tiny_cnn", "onnxruntime", "fp32", 16, 1, "cuda")
    providers = backend.execution_providers(  # type: ignore[attr-defined]
        BuildContext(case, tmp_path, threads=1)
    )
    assert providers == [STRICT_CUDA_EP]


def test_the_suite_turns_tf32_off_for_torch(
    pytester: pytest.Pytester, suite_dir: Path, run_suite: Callable[..., pytest.RunResult]
) -> None:
    """cuDNN convolutions default to TF32; a session of the suite must run them in IEEE fp32."""
    pytester.makepyfile(
        test_flags="""
        import torch

        def test_flags():
            assert torch.backends.cudnn.allow_tf32 is False
            assert torch.backends.cuda.matmul.allow_tf32 is False
            assert torch.backends.cudnn.conv.fp32_precision != "tf32"
        """
    )
    run_suite("test_flags.py").assert_outcomes(passed=1)


def test_the_gpu_is_probed_in_one_place_for_fingerprint_and_machine_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medgate.core.fingerprint import machine_fingerprint
    from medgate.core.machine import machine_facts

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    assert machine_fingerprint(2)["gpu"] == "NVIDIA H200"
    facts = machine_facts(2)["cuda"]
    assert (facts["device"], facts["capability"]) == ("NVIDIA H200", "9.0")
