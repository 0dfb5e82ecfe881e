"""What the measured numbers depend on, added to pytest-benchmark's machine info."""

from __future__ import annotations

import importlib.metadata
import os
import platform
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


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts(threads: int) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            name: _version(name)
            for name in (
                "medgate",
                "torch",
                "torchvision",
                "onnxruntime",
                "onnxruntime-gpu",
                "onnx",
            )
            if _version(name) is not None
        },
        "cuda": None,
    }
    if torch.cuda.is_available():
        facts["cuda"] = {
            "device": torch.cuda.get_device_name(0),
            "runtime": torch.version.cuda,
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        }
    return facts
