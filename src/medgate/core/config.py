"""``SuiteConfig``: every option and ini key (``medgate.core.options``), parsed once into frozen
data."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pytest

from medgate.core.matrix import MatrixSpec
from medgate.core.options import OPTIONS, default_cache_dir, model_paths, option_value
from medgate.core.precision import CalibrationRecipe


@dataclass(frozen=True)
class SuiteConfig:
    matrix: MatrixSpec
    throughput_batch: int
    threads: int
    agreement_samples: int
    accuracy_batch: int
    calibration: CalibrationRecipe
    cache_dir: Path
    baseline_dir: Path
    root: Path
    update_baselines: bool = False
    memory_headroom: float = 0.10
    latency_tolerance: float = 0.10
    latency_remeasures: int = 2
    latency_normalize: str = "auto"
    latency_baseline_machine: str | None = None
    latency_seed: int | None = None
    benchmark_max_time: float = 1.0
    benchmark_min_rounds: int = 5
    checkpoints: Mapping[str, Path] = field(default_factory=dict)
    datasets: Mapping[str, Path] = field(default_factory=dict)
    zoo: tuple[str, ...] = ()
    base: str | None = None
    base_python: str | None = None
    base_identical: str = "skip"
    base_tolerance: float = 0.05
    base_pairs: int = 16
    base_block_s: float = 0.1
    #: None: no report is written (``--medgate-report=off``).
    report_dir: Path | None = None
    shard: str = ""
    peak_size: int = 2048
    watts_per_thread: float = 5.0

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> SuiteConfig:
        values = {option.dest: option_value(config, option) for option in OPTIONS}
        try:
            checkpoints = model_paths(values["medgate_checkpoint"])
            datasets = model_paths(values["medgate_dataset"])
        except argparse.ArgumentTypeError as error:
            raise pytest.UsageError(f"medgate: {error}") from error
        root = config.rootpath
        return cls(
            matrix=MatrixSpec(
                models=values["medgate_models"],
                backends=values["medgate_backends"],
                precisions=values["medgate_precisions"],
                input_sizes=values["medgate_input_sizes"],
                devices=values["medgate_device"],
            ),
            throughput_batch=values["medgate_throughput_batch"],
            threads=values["medgate_threads"],
            agreement_samples=values["medgate_agreement_samples"],
            accuracy_batch=values["medgate_accuracy_batch"],
            calibration=CalibrationRecipe(samples=values["medgate_calibration_samples"]),
            cache_dir=Path(values["medgate_cache_dir"]).expanduser()
            if values["medgate_cache_dir"]
            else default_cache_dir(),
            baseline_dir=_rooted(root, Path(values["medgate_baseline_dir"]).expanduser()),
            root=root,
            update_baselines=bool(config.getoption("medgate_update_baselines")),
            memory_headroom=values["medgate_memory_headroom"],
            latency_tolerance=values["medgate_latency_tolerance"],
            latency_remeasures=values["medgate_latency_remeasures"],
            latency_normalize=values["medgate_latency_normalize"],
            latency_baseline_machine=values["medgate_latency_baseline_machine"] or None,
            latency_seed=values["medgate_latency_seed"],
            benchmark_max_time=float(config.getoption("benchmark_max_time", 1.0)),
            benchmark_min_rounds=int(config.getoption("benchmark_min_rounds", 5)),
            checkpoints=MappingProxyType({m: _rooted(root, p) for m, p in checkpoints.items()}),
            datasets=MappingProxyType({m: _rooted(root, p) for m, p in datasets.items()}),
            base=values["medgate_base"] or None,
            base_python=values["medgate_base_python"] or None,
            base_identical=values["medgate_base_identical"],
            base_tolerance=values["medgate_base_tolerance"],
            base_pairs=values["medgate_base_pairs"],
            base_block_s=values["medgate_base_block_ms"] / 1000,
            report_dir=None
            if values["medgate_report"] == "off"
            else _rooted(root, Path(values["medgate_report"]).expanduser()),
            shard=values["medgate_shard"],
            peak_size=values["medgate_peak_size"],
            watts_per_thread=values["medgate_watts_per_thread"],
            zoo=tuple(config.getini("medgate_zoo")),
        )


def _rooted(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else root / path
