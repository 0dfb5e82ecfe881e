"""What the measured numbers depend on: the CPU's identity and ISA, cores, library versions.

The CPU is identified with py-cpuinfo (vendor, family, model, stepping, ISA flags, caches):
``model name`` alone says "AMD EPYC" for a Zen 1 with AVX2 only and for a Zen 5 with AVX-512 and
native bf16, whose kernels, speeds and rounding differ.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

#: Instruction-set extensions that select different kernels in torch, oneDNN, MKL, FBGEMM and
#: ONNX Runtime. The fingerprint records which of these the CPU has; other flags do not move a
#: timing or a rounding.
KERNEL_ISA = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

#: Instruction-set extensions with native bf16 arithmetic (Cooper Lake / Sapphire Rapids / Zen 4).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Instruction-set extensions with int8 dot products (VNNI), which FBGEMM and ONNX Runtime use.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Cpu:
    """One CPU as the kernels see it. ``uarch`` is a readable name where the family and model
    are known (``zen3``), else ``f<family>m<model>``."""

    vendor: str
    brand: str
    family: int
    model: int
    stepping: int
    flags: frozenset[str]
    l2_cache_bytes: int | None = None
    l3_cache_bytes: int | None = None

    @property
    def uarch(self) -> str:
        return microarchitecture(self.vendor, self.family, self.model, self.stepping)

    @property
    def isa(self) -> tuple[str, ...]:
        """The kernel-selecting extensions this CPU has, in ``KERNEL_ISA`` order."""
        return tuple(flag for flag in KERNEL_ISA if flag in self.flags)

    def has(self, *flags: str) -> bool:
        return all(flag in self.flags for flag in flags)

    def has_any(self, *flags: str) -> bool:
        return any(flag in self.flags for flag in flags)

    def describe(self) -> str:
        return f"{self.brand} ({self.uarch}, family {self.family} model {self.model})"


#: (vendor, family) -> [(first model, last model, name)]: the x86 server and desktop cores a CI
#: runner is likely to be. Unknown ones are named by family and model, which is just as unique.
_UARCH = {
    ("AuthenticAMD", 0x17): [(0x00, 0x2F, "zen1"), (0x30, 0xFF, "zen2")],
    ("AuthenticAMD", 0x19): [
        (0x10, 0x1F, "zen4"),
        (0x60, 0x7F, "zen4"),
        (0xA0, 0xAF, "zen4"),
        (0x00, 0xFF, "zen3"),
    ],
    ("AuthenticAMD", 0x1A): [(0x00, 0xFF, "zen5")],
    ("GenuineIntel", 6): [
        (0x3F, 0x3F, "haswell"),
        (0x4F, 0x4F, "broadwell"),
        (0x55, 0x55, "skylake-x"),
        (0x6A, 0x6C, "icelake-x"),
        (0x8F, 0x8F, "sapphirerapids"),
        (0xCF, 0xCF, "emeraldrapids"),
        (0xAD, 0xAE, "graniterapids"),
        (0x8E, 0x9E, "kabylake"),
        (0x97, 0x9A, "alderlake"),
        (0xB7, 0xBF, "raptorlake"),
    ],
}


def microarchitecture(vendor: str, family: int, model: int, stepping: int) -> str:
    for first, last, name in _UARCH.get((vendor, family), []):
        if first <= model <= last:
            # Cascade Lake shares Skylake-X's model number; its steppings start at 5.
            return "cascadelake" if name == "skylake-x" and stepping >= 5 else name
    return f"f{family}m{model}"


@cache
def cpu() -> Cpu:
    """This machine's CPU, read once per process (py-cpuinfo runs CPUID in a subprocess)."""
    import cpuinfo  # py-cpuinfo; imported here because reading the CPU takes ~0.2 s

    info: dict[str, Any] = cpuinfo.get_cpu_info()
    return Cpu(
        vendor=str(info.get("vendor_id_raw") or platform.machine()),
        brand=str(info.get("brand_raw") or platform.processor() or platform.machine()),
        family=int(info.get("family") or 0),
        model=int(info.get("model") or 0),
        stepping=int(info.get("stepping") or 0),
        flags=frozenset(info.get("flags") or ()),
        l2_cache_bytes=info.get("l2_cache_size"),
        l3_cache_bytes=info.get("l3_cache_size"),
    )


def missing_native_bf16() -> str | None:
    """Why bf16 on this CPU would be emulated, or None when it has native bf16 instructions.

    Without them PyTorch converts every bf16 operand to fp32 and back: MobileNetV2@224 took
    424 ms per image in bf16 against 40 ms in fp32 on a 2-core AMD EPYC with AVX2 only. Timing
    that measures the emulation, not the precision; the case skips with this reason.
    """
    here = cpu()
    if not here.flags or here.has_any(*NATIVE_BF16_FLAGS):
        return None
    return (
        f"{here.describe()} has no native bf16 instructions ({' / '.join(NATIVE_BF16_FLAGS)}); "
        "PyTorch would emulate bf16 at ~10x the fp32 time"
    )


def usable_cores() -> int:
    """Cores this process may run on (its affinity), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


#: Packages whose version can move a figure medgate records.
RECORDED_PACKAGES = (
    "medgate",
    "torch",
    "torchvision",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "torchao",
    "numpy",
    "scikit-learn",
    "scipy",
)


def library_versions() -> dict[str, str]:
    """Installed versions of ``RECORDED_PACKAGES`` (absent ones left out) and Python's."""
    versions = {name: package_version(name) for name in RECORDED_PACKAGES}
    found = {name: version for name, version in versions.items() if version is not None}
    return {"python": platform.python_version(), **found}


def cpu_facts() -> dict[str, Any]:
    """The CPU's identity as plain data, for fingerprints and recorded files."""
    here = cpu()
    return {
        "cpu_vendor": here.vendor,
        "cpu_brand": here.brand,
        "cpu_family": here.family,
        "cpu_model": here.model,
        "cpu_stepping": here.stepping,
        "cpu_uarch": here.uarch,
        "cpu_isa": list(here.isa),
        "cpu_l2_bytes": here.l2_cache_bytes,
        "cpu_l3_bytes": here.l3_cache_bytes,
    }


def machine_facts(threads: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        **cpu_facts(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": library_versions(),
        "native_bf16": missing_native_bf16() is None,
        "cuda": None,
    }
    here = gpu()
    if here is not None:
        facts["cuda"] = {
            "device": here.name,
            "driver": here.driver,
            "runtime": here.runtime,
            "capability": here.capability,
        }
    return facts


@dataclass(frozen=True)
class Gpu:
    name: str
    #: The kernel driver's version, which torch does not report (None where it cannot be read).
    driver: str | None
    runtime: str | None
    capability: str


def gpu() -> Gpu | None:
    """The first CUDA device, or None. Not cached: tests fake a GPU by patching torch.cuda."""
    if not torch.cuda.is_available():
        return None
    driver = None
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.exists():
        match = re.search(r"Kernel Module\s+(\S+)", version_file.read_text())
        driver = match.group(1) if match else None
    return Gpu(
        name=torch.cuda.get_device_name(0),
        driver=driver,
        runtime=torch.version.cuda,
        capability=".".join(map(str, torch.cuda.get_device_capability(0))),
    )
