"""What the machine can do, measured in the run: the best GEMM rate per dtype class of the kernels
the backends use, and the memory copy bandwidth. Roofline efficiency divides a case's achieved
FLOP/s by the peak of its precision's class.

The peak of a class is the best of its kernels, not PyTorch's alone: ONNX Runtime's MLAS MatMul
can run twice as fast as ``torch.mm`` on the same CPU, and an ONNX Runtime case measured against
the ``torch.mm`` figure would read above 100 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medgate.core.machine import INT8_DOT_FLAGS, NATIVE_BF16_FLAGS, cpu

#: Precision -> the dtype class whose peak bounds it.
PEAK_CLASS = {
    "fp32": "fp32",
    "fp16": "fp16",
    "bf16": "bf16",
    "int8-dynamic": "int8",
    "int8-static": "int8",
}

Kernel = Callable[[], None]


@dataclass(frozen=True)
class Peak:
    """The best rate of one dtype class (FLOP/s, or OP/s for int8) and which kernel gave it."""

    dtype: str
    flops: float
    kernel: str
    #: Every kernel tried: its rate, or why it could not run.
    kernels: dict[str, float | str]
    #: False where the class runs without instructions of its own (int8 without VNNI/AMX).
    native: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "flops": self.flops,
            "kernel": self.kernel,
            "kernels": dict(self.kernels),
            "native": self.native,
        }


@dataclass(frozen=True)
class Peaks:
    device: str
    size: int
    threads: int
    by_dtype: dict[str, Peak] = field(default_factory=dict)
    #: Bytes per second of a large tensor copy (read + write), the roofline's memory roof.
    bandwidth: float | None = None
    #: Dtype classes not measured, and why.
    missing: dict[str, str] = field(default_factory=dict)

    def for_precision(self, precision: str) -> Peak | None:
        """The peak that bounds ``precision``; fp32's where its own class runs no native
        kernel here (CPU fp16, and bf16 without native bf16)."""
        dtype = PEAK_CLASS.get(precision, "fp32")
        return self.by_dtype.get(dtype) or self.by_dtype.get("fp32")

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "gemm_size": self.size,
            "threads": self.threads,
            "bandwidth": self.bandwidth,
            "by_dtype": {name: peak.as_dict() for name, peak in self.by_dtype.items()},
            "missing": dict(self.missing),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peaks:
        return cls(
            device=data["device"],
            size=data["gemm_size"],
            threads=data["threads"],
            by_dtype={
                name: Peak(
                    peak["dtype"],
                    peak["flops"],
                    peak["kernel"],
                    dict(peak["kernels"]),
                    peak["native"],
                )
                for name, peak in data["by_dtype"].items()
            },
            bandwidth=data["bandwidth"],
            missing=dict(data["missing"]),
        )


def best_rate(kernel: Kernel, work: float, repeats: int = 3, min_s: float = 0.05) -> float:
    """The best of ``repeats`` timings of ``kernel`` (after one untimed call), as work per
    second; each timing runs the kernel as often as fills ``min_s``, so a fast kernel is not
    timed at the clock's resolution."""
    kernel()
    started = time.perf_counter()
    kernel()
    once = max(time.perf_counter() - started, 1e-9)
    calls = max(1, int(min_s / once))
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            kernel()
        best = max(best, work * calls / (time.perf_counter() - started))
    return best


def _torch_mm(size: int, dtype: torch.dtype, device: str) -> Kernel:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        torch.mm(a, b)
        sync()

    return run


def _torch_int_mm(size: int, device: str) -> Kernel:
    a = torch.randint(-128, 127, (size, size), dtype=torch.int8, device=device)
    b = torch.randint(-128, 127, (size, size), dtype=torch.int8, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        torch._int_mm(a, b)  # the int8 GEMM PyTorch's quantized CPU and CUDA paths reach
        sync()

    return run


def _ort_matmul(size: int, threads: int, integer: bool) -> Kernel:
    """ONNX Runtime's CPU MatMul (fp32) or MatMulInteger (uint8 x int8), as its graphs run it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a: np.ndarray[Any, Any]
    b: np.ndarray[Any, Any]
    if integer:
        a = np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)
        b = np.random.default_rng(1).integers(-128, 127, (size, size), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        types = (TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
    else:
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        types = (TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT)
    graph = helper.make_graph(
        [node],
        "peak",
        [
            helper.make_tensor_value_info("a", types[0], [size, size]),
            helper.make_tensor_value_info("b", types[1], [size, size]),
        ],
        [helper.make_tensor_value_info("c", types[2], [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(),
        options,
        providers=["CPUExecutionProvider"],
    )
    feeds = {"a": a, "b": b}

    def run() -> None:
        session.run(None, feeds)

    return run


KernelBuilder = Callable[[int], Kernel]


def _kernels(device: str, threads: int) -> dict[str, dict[str, KernelBuilder]]:
    """Dtype class -> kernel name -> a builder of the kernel at a GEMM size, for ``device``."""
    kernels: dict[str, dict[str, KernelBuilder]] = {
        "fp32": {"torch.mm": lambda n: _torch_mm(n, torch.float32, device)},
        "bf16": {"torch.mm": lambda n: _torch_mm(n, torch.bfloat16, device)},
        "int8": {"torch._int_mm": lambda n: _torch_int_mm(n, device)},
    }
    if device == "cuda":
        kernels["fp16"] = {"torch.mm": lambda n: _torch_mm(n, torch.float16, device)}
    else:
        kernels["fp32"]["onnxruntime MatMul"] = lambda n: _ort_matmul(n, threads, False)
        kernels["int8"]["onnxruntime MatMulInteger"] = lambda n: _ort_matmul(n, threads, True)
    return kernels


#: Smallest GEMM side timed, and the longest one call of a kernel may take: a kernel with no
#: fast path here (``torch._int_mm`` on a CPU without VNNI runs at ~1 % of the peak) is timed at
#: the largest size that fits, not for a minute at the full size.
PROBE_SIZE = 256
MAX_CALL_S = 0.5


def kernel_rate(build: KernelBuilder, size: int) -> float:
    """The kernel's best rate at ``size`` and at its half and quarter (cache blocking favours
    different sizes on different CPUs), leaving out sizes whose one call would exceed
    ``MAX_CALL_S``, judged from a probe at ``PROBE_SIZE``."""
    probe = build(PROBE_SIZE)
    probe()
    started = time.perf_counter()
    probe()
    seconds = max(time.perf_counter() - started, 1e-9)
    while size > PROBE_SIZE and seconds * (size / PROBE_SIZE) ** 3 > MAX_CALL_S:
        size //= 2
    sizes = {max(PROBE_SIZE, size // 4), max(PROBE_SIZE, size // 2), size}
    return max(best_rate(build(n), 2.0 * n**3) for n in sorted(sizes))


def why_not_measured(device: str, dtype: str) -> str | None:
    """Why a dtype class gets no peak of its own on this machine (its cases use fp32's)."""
    if device != "cpu":
        return None
    here = cpu()
    if dtype == "bf16" and here.flags and not here.has_any(*NATIVE_BF16_FLAGS):
        return (
            f"no native bf16 instructions ({' / '.join(NATIVE_BF16_FLAGS)}) on {here.describe()}: "
            "bf16 runs as fp32 arithmetic; its cases are held to the fp32 peak"
        )
    return None


def measure_peaks(device: str, threads: int, size: int = 2048) -> Peaks:
    """The best rate per dtype class of ``size``-square GEMMs on ``device`` with ``threads``,
    and the copy bandwidth. A kernel that cannot run here is recorded with its error."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    by_dtype: dict[str, Peak] = {}
    missing: dict[str, str] = {}
    try:
        for dtype, builders in _kernels(device, threads).items():
            reason = why_not_measured(device, dtype)
            if reason is not None:
                missing[dtype] = reason
                continue
            rates: dict[str, float | str] = {}
            for name, build in builders.items():
                try:
                    rates[name] = kernel_rate(build, size)
                except Exception as error:  # a kernel this build or CPU lacks
                    rates[name] = f"unavailable: {type(error).__name__}: {error}"[:200]
            measured = {name: rate for name, rate in rates.items() if isinstance(rate, float)}
            if not measured:
                missing[dtype] = "no kernel ran: " + "; ".join(str(r) for r in rates.values())
                continue
            kernel = max(measured, key=lambda name: measured[name])
            native = dtype != "int8" or device != "cpu" or cpu().has_any(*INT8_DOT_FLAGS)
            by_dtype[dtype] = Peak(dtype, measured[kernel], kernel, rates, native)
        bandwidth = copy_bandwidth(device)
    finally:
        torch.set_num_threads(previous)
    return Peaks(device, size, threads, by_dtype, bandwidth, missing)


def copy_bandwidth(device: str, megabytes: int = 256) -> float:
    """Bytes moved per second (read + write) copying a ``megabytes`` tensor, far beyond cache."""
    source = torch.empty(megabytes * 2**18, device=device)
    target = torch.empty_like(source)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        target.copy_(source)
        sync()

    return best_rate(run, 2.0 * source.numel() * source.element_size(), repeats=3, min_s=0.1)
