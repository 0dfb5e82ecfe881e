"""The kernels training runs on, pinned so that one recipe gives the same tensors on any CPU.

Left to themselves, torch, oneDNN and MKL pick kernels by the CPU's ISA and oneDNN blocks its
loops by the cache sizes it reads: the same recipe on the same bytes trained other weights on a
Zen 5 (AVX-512) than on a Zen 1 (AVX2), and the accuracy gate then failed on unchanged code.
Training therefore runs in a worker process (the ISA switches are read once, at start-up) with:

- ATen's vectorized kernels pinned to one capability (``ATEN_CPU_CAPABILITY``);
- MKL's BLAS on one code branch (``MKL_CBWR``, Conditional Numerical Reproducibility, strict);
- oneDNN and NNPACK off: their kernels are chosen by ISA and cache size at run time and cannot be
  pinned across machines, so convolutions run as ATen's im2col + MKL GEMM;
- a fixed thread count, whatever the machine's cores, and deterministic algorithms.

The measured inference is not pinned: it runs as deployed, on whatever the machine offers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from medgate.core.machine import Cpu

#: Threads of every training run: reductions split by thread count, so it is part of the pin.
TRAIN_THREADS = 2


@dataclass(frozen=True)
class KernelPin:
    """``name`` is part of the checkpoint key: two pins may train different weights."""

    name: str
    aten_capability: str
    mkl_branch: str
    threads: int = TRAIN_THREADS
    requires: tuple[str, ...] = ()

    def environment(self) -> dict[str, str]:
        """What the worker process must start with."""
        return {
            "ATEN_CPU_CAPABILITY": self.aten_capability,
            "MKL_CBWR": f"{self.mkl_branch},STRICT",
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
        }

    def key(self) -> dict[str, object]:
        return {"pin": self.name, "threads": self.threads, "onednn": False}


#: x86-64-v3 (Haswell, Zen 1 and later): every CPU a CI runner has had, and faster than the
#: baseline pin (the README gives the cost of each against unpinned training).
AVX2 = KernelPin("avx2", aten_capability="avx2", mkl_branch="AVX2", requires=("avx2", "fma"))
#: Any x86-64: plain C++ kernels and MKL's SSE2 branch.
BASELINE = KernelPin("x86-64", aten_capability="default", mkl_branch="COMPATIBLE")


PINS = {pin.name: pin for pin in (AVX2, BASELINE)}


def pin_for(cpu: Cpu) -> KernelPin:
    """The AVX2 pin where the CPU has it, else the baseline one (which trains other weights,
    under another checkpoint key, said so by the key's ``pin``)."""
    return AVX2 if cpu.has(*AVX2.requires) else BASELINE


class PinError(RuntimeError):
    """The worker did not start on the pinned kernels (a torch that renamed its switch)."""


@contextmanager
def pinned(pin: KernelPin, environment: Mapping[str, str]) -> Iterator[None]:
    """Inside the worker: check the ISA switches took, then turn off what cannot be pinned."""
    capability = torch.backends.cpu.get_cpu_capability()
    if (
        capability.lower() != pin.aten_capability
        or environment.get("MKL_CBWR") != pin.environment()["MKL_CBWR"]
    ):
        raise PinError(
            f"training worker runs ATen capability {capability} with MKL_CBWR="
            f"{environment.get('MKL_CBWR')!r}, not the pinned {pin.aten_capability} / "
            f"{pin.environment()['MKL_CBWR']}; start it through medgate.training"
        )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(pin.threads)
    try:
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.set_num_threads(previous_threads)
