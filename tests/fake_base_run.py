"""A ``BaseRun`` whose two workers are stand-ins: for the tests of what it asks of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medgate.base.client import SideSpec
from medgate.base.run import BaseRun
from medgate.core.config import SuiteConfig
from medgate.core.matrix import MatrixSpec
from medgate.core.precision import CalibrationRecipe


def new_base_run(
    tmp_path: Path, worker: Callable[[str], Any], machine: str = "machine-a"
) -> BaseRun:
    """A run against a base in ``tmp_path`` whose ``worker(side)`` is ``worker``: an object
    with the client's ``send``, ``receive`` and ``ask`` (``medgate.base.client.Worker``)."""
    config = SuiteConfig(
        matrix=MatrixSpec((), ("*",), ("*",), ("all",), ("cpu",)),
        throughput_batch=4,
        threads=1,
        agreement_samples=8,
        accuracy_batch=8,
        calibration=CalibrationRecipe(),
        cache_dir=tmp_path / "cache",
        baseline_dir=tmp_path / "baselines",
        root=tmp_path,
    )
    run = BaseRun(
        config,
        head=SideSpec("head", tmp_path, "working tree"),
        base=SideSpec("base", tmp_path, "base"),
        log_dir=tmp_path / "logs",
        machine=machine,
    )
    run.worker = worker  # type: ignore[method-assign]
    return run
