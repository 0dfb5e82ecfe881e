"""The machine a timing was measured on, as an identity: latency baselines are keyed by it.

pytest-benchmark's machine id (``Linux-CPython-3.11-64bit``) is the same for a laptop and a CI
runner. A fingerprint names what moves a latency: the CPU's microarchitecture (vendor, family,
model, stepping, the ISA extensions that select kernels, caches), usable cores, the thread
setting, GPU model and driver, and the torch / ONNX Runtime builds. Projects add their own keys
through the ``pytest_medgate_fingerprint`` hook (an instance type, a power profile).

``SCHEMA`` versions the set of facts: a fingerprint of another schema describes the machine with
other facts (schema 1 named the CPU by ``model name`` alone, which one "AMD EPYC" Zen 1 and Zen 5
share), so baselines recorded under it are refused, never matched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from medgate.core.machine import cpu_facts, gpu, package_version, usable_cores

SCHEMA = 2


def machine_fingerprint(threads: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "fingerprint_schema": SCHEMA,
        **cpu_facts(),
        "usable_cores": usable_cores(),
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "gpu": None,
        "gpu_driver": None,
        "cuda_runtime": None,
    }
    here = gpu()
    if here is not None:
        facts["gpu"], facts["gpu_driver"], facts["cuda_runtime"] = (
            here.name,
            here.driver,
            here.runtime,
        )
    return facts


def _slug(text: str, limit: int = 32) -> str:
    words = re.sub(r"\(r\)|\(tm\)|cpu|processor|\d+-core", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-")[:limit].strip("-")


@dataclass(frozen=True)
class Fingerprint:
    facts: Mapping[str, Any]

    @property
    def id(self) -> str:
        """Readable where it can be, unique where it must be: a slug and a hash of every fact."""
        digest = hashlib.sha256(json.dumps(dict(self.facts), sort_keys=True).encode()).hexdigest()
        parts = [_slug(str(self.facts.get("cpu_brand") or self.facts.get("cpu_model", "cpu")))]
        if self.facts.get("cpu_uarch"):
            parts.append(_slug(str(self.facts["cpu_uarch"]), 16))
        parts.append(f"{self.facts.get('usable_cores')}c{self.facts.get('threads')}t")
        if self.facts.get("gpu"):
            parts.append(_slug(str(self.facts["gpu"]), 24))
        return "-".join(part for part in parts if part) + "-" + digest[:8]

    @property
    def schema(self) -> int:
        """1 for fingerprints recorded before the schema was versioned."""
        value = self.facts.get("fingerprint_schema", 1)
        return value if isinstance(value, int) else 1

    def device_class(self, device: str) -> str:
        """What an absolute budget is written against: ``cpu-2core``, ``cuda-nvidia-h100-...``."""
        if device == "cuda":
            return f"cuda-{_slug(str(self.facts.get('gpu') or 'unknown'), 40)}"
        return f"cpu-{self.facts.get('usable_cores')}core"

    def differences(self, other: Fingerprint) -> list[str]:
        keys = sorted(set(self.facts) | set(other.facts))
        return [
            f"{key}: {self.facts.get(key)!r} here, {other.facts.get(key)!r} there"
            for key in keys
            if self.facts.get(key) != other.facts.get(key)
        ]
