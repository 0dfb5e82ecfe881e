"""What the measured numbers depend on, added to pytest-benchmark's machine info."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


@cache
def cpu_flags() -> frozenset[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    return frozenset()


#: Instruction-set extensions with native bf16 arithmetic (Cooper Lake / Sapphire Rapids / Zen 4).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def missing_native_bf16() -> str | None:
    """Why bf16 on this CPU would be emulated, or None when it has native bf16 instructions.

    Without them PyTorch converts every bf16 operand to fp32 and back: MobileNetV2@224 took
    424 ms per image in bf16 against 40 ms in fp32 on this project's 2-core AMD EPYC (AVX2 only).
    Timing that measures the emulation, not the precision; the case skips with this reason.
    """
    flags = cpu_flags()
    if not flags or any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return None
    return (
        f"{cpu_model()} has no native bf16 instructions ({' / '.join(NATIVE_BF16_FLAGS)}); "
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


def machine_facts(threads: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
        "native_bf16": missing_native_bf16() is None,
        "cuda": None,
    }
    if torch.cuda.is_available():
        facts["cuda"] = {
            "device": torch.cuda.get_device_name(0),
            "runtime": torch.version.cuda,
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        }
    return facts
