"""Project-level pytest configuration for the gate in perf_tests/ (the engine is the medgate
plugin, loaded through its entry point)."""

from __future__ import annotations

import os
from typing import Any

import pytest


def pytest_medgate_fingerprint(config: pytest.Config, fingerprint: dict[str, Any]) -> None:
    # A CI runner may share a developer machine's CPU model, but not its neighbours or its load:
    # its timings are compared only with baselines recorded on CI runners (from a CI job).
    fingerprint["runner"] = os.environ.get(
        "MEDGATE_RUNNER", "ci" if os.environ.get("CI") else "local"
    )
