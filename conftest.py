"""Project-level pytest configuration for the gate in perf_tests/ (the engine is the medgate
plugin, loaded through its entry point)."""

from __future__ import annotations

import os
from typing import Any

import pytest


def pytest_medgate_machine_info(config: pytest.Config, info: dict[str, Any]) -> None:
    # CI runners of one pool share a CPU model but not their neighbours' load: record which one.
    info["runner"] = os.environ.get("MEDGATE_RUNNER", "ci" if os.environ.get("CI") else "local")
