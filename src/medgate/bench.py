"""Timing one case with pytest-benchmark: warm-up, synchronization, ``extra_info``."""

from __future__ import annotations

import time
from typing import Any

import torch

from medgate.backends.base import Session
from medgate.facts import ModelFacts
from medgate.matrix import Case


def time_case(
    benchmark: Any, case: Case, session: Session, inputs: torch.Tensor, facts: ModelFacts
) -> None:
    """Time ``session.run`` on ``inputs`` (a preprocessed batch); preprocessing is excluded.

    The first call is timed on its own (``first_call_s``): for torch.compile it is the compile
    of this batch shape, for TorchScript the profiling run, elsewhere lazy initialization.
    """
    placed = session.place(inputs)
    started = time.perf_counter()
    session.run(placed)
    session.synchronize()
    first_call_s = time.perf_counter() - started
    for _ in range(session.warmup_calls - 1):
        session.run(placed)
    session.synchronize()
    if case.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        session.run(placed)
        session.synchronize()

    benchmark.group = f"{case.model} {case.input_size}px bs{case.batch} {case.device}"
    benchmark.extra_info.update(
        {
            "model": case.model,
            "backend": case.backend,
            "precision": case.precision,
            "input_size": case.input_size,
            "batch": case.batch,
            "device": case.device,
            "params": facts.params,
            "param_bytes": facts.param_bytes,
            "flops_per_sample": facts.flops_per_sample,
            "artifact_bytes": session.artifact_bytes,
            "prepare_s": session.prepare_s,
            "compile_s": session.compile_s,
            "first_call_s": first_call_s,
        }
    )
    benchmark(step)
    if case.device == "cuda":
        benchmark.extra_info["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated()
