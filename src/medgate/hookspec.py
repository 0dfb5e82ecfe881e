"""Hooks a project's conftest.py can implement to customise medgate."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_medgate_machine_info(config: pytest.Config, info: dict[str, Any]) -> None:
    """Add what your measurements depend on to the machine info medgate records.

    ``info`` is stored under ``machine_info["medgate"]`` in every pytest-benchmark result, so a
    baseline says what it was measured on. Example, in your conftest.py::

        def pytest_medgate_machine_info(config, info):
            info["runner"] = os.environ.get("RUNNER_NAME", "local")
    """


def pytest_medgate_fingerprint(config: pytest.Config, fingerprint: dict[str, Any]) -> None:
    """Add what makes two machines time differently to the fingerprint latency baselines are
    keyed by (``baselines/latency/<fingerprint id>/``). Add only what moves a timing: every
    added key makes a new machine with no baseline. Example, in your conftest.py::

        def pytest_medgate_fingerprint(config, fingerprint):
            fingerprint["instance_type"] = os.environ.get("INSTANCE_TYPE", "unknown")
    """
