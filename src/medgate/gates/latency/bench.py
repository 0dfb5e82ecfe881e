"""Timing one case: warm-up, interleaved rounds through pytest-benchmark, the latency verdict."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch

from medgate.backends.base import Session
from medgate.core import steps
from medgate.core.device import cuda_peak_since, start_cuda_peak
from medgate.core.facts import ModelFacts
from medgate.core.matrix import Case
from medgate.gates.latency.benchmark_stats import add_rounds, timed_rounds
from medgate.gates.latency.reference_workload import ReferenceWorkload
from medgate.gates.latency.run import LatencyLedger, LatencyResult
from medgate.gates.latency.sampling import Rounds, gc_paused, measure, rounds_for
from medgate.gates.latency.stats import noise, percentile


def stage_key(case: Case, stage: str) -> str:
    return f"{case.id}:{stage}"


def time_case(
    benchmark: Any,
    case: Case,
    session: Session,
    inputs: torch.Tensor,
    facts: ModelFacts,
    ledger: LatencyLedger,
    reference: ReferenceWorkload,
) -> LatencyResult | None:
    """Time ``session.run`` on ``inputs`` (a preprocessed batch); preprocessing is excluded.

    The first call is timed on its own (``first_call_s``): for torch.compile it is the compile
    of this batch shape, for TorchScript the profiling run, elsewhere lazy initialization.
    pytest-benchmark times the first block of rounds (each preceded, untimed, by the reference
    workload); re-measurements the verdict asks for are added to its statistics. None when
    pytest-benchmark is disabled (``--benchmark-disable``): nothing was timed.
    """
    placed = session.place(inputs)
    started = time.perf_counter()
    session.run(placed)
    session.synchronize()
    first_call_s = time.perf_counter() - started
    for _ in range(session.warmup_calls - 1):
        session.run(placed)
    session.synchronize()
    reference.warm_up()
    resident = start_cuda_peak() if case.device == "cuda" else 0

    def step() -> None:
        session.run(placed)
        session.synchronize()

    benchmark.group = f"{case.model} {case.input_size}px bs{case.batch} {case.device}"
    benchmark.extra_info.update(
        {
            **dataclasses.asdict(case),
            "params": facts.params,
            "param_bytes": facts.param_bytes,
            "flops_per_sample": facts.flops_per_sample,
            "artifact_bytes": session.artifact_bytes,
            "prepare_s": session.prepare_s,
            "compile_s": session.compile_s,
            "first_call_s": first_call_s,
        }
    )
    estimate = _seconds_per_round(step, reference)
    rounds = rounds_for(estimate, ledger.max_time, ledger.min_rounds)
    references: list[float] = []
    with gc_paused(), steps.step("time"):
        benchmark.pedantic(
            step, setup=lambda: references.append(reference.time_once()), rounds=rounds
        )
    timed = timed_rounds(benchmark)
    if timed is None:
        return None
    if case.device == "cuda":
        benchmark.extra_info["cuda_peak_bytes"] = cuda_peak_since(resident)
    first = Rounds(MappingProxyType({"model": timed}), tuple(references))

    def measure_more(count: int) -> Rounds:
        more = measure({"model": step}, reference, count)
        add_rounds(benchmark, more.series["model"])
        return more

    with steps.step("time"):
        result = ledger.settle(case, case.id, first, measure_more)
    benchmark.extra_info.update(_verdict_info(result))
    return result


def _seconds_per_round(step: Callable[[], object], reference: ReferenceWorkload) -> float:
    """The median of three rounds: one round alone may be an interrupted one."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        reference.time_once()
        step()
        timings.append(time.perf_counter() - started)
    return sorted(timings)[1]


def _verdict_info(result: LatencyResult) -> dict[str, Any]:
    model = result.rounds.series["model"]
    info: dict[str, Any] = {
        "rounds": result.rounds.count,
        "remeasures": result.remeasures,
        "noise_iqr_over_median": noise(model),
        "p95_s": percentile(model, 95),
        "p99_s": percentile(model, 99),
        "reference_median_s": percentile(result.rounds.reference, 50),
        "verdict": str(result.status),
    }
    if result.judgement is not None and result.judgement.series:
        comparison = result.judgement.series[0].comparison
        info.update(
            ratio=comparison.ratio,
            ratio_ci=[comparison.low, comparison.high],
            mann_whitney_p=comparison.mann_whitney_p,
            ks_p=comparison.ks_p,
            basis=result.judgement.basis,
        )
    return info


def time_stages(
    case: Case,
    images: Any,
    preprocess: Callable[[Any], torch.Tensor],
    features: Session,
    head: Session,
    ledger: LatencyLedger,
    reference: ReferenceWorkload,
) -> list[LatencyResult]:
    """Preprocessing (raw image to tensor), the feature extractor and the head, each timed in a
    block of its own rounds (each after the reference workload), so a regression names the
    stage it is in. Blocks, not stages interleaved round by round: three runtimes' thread pools
    taking turns every round slowed each other (ORT features 6 -> 17 ms, noise 33 %)."""
    features_in = features.place(preprocess(images))
    # A plain tensor: an inference-mode one would fail a compiled head's guards.
    head_in = head.place(features.run(features_in).float().cpu().clone())

    def run_features() -> None:
        features.run(features_in)
        features.synchronize()

    def run_head() -> None:
        head.run(head_in)
        head.synchronize()

    steps: dict[str, Callable[[], object]] = {
        "preprocess": lambda: preprocess(images),
        "features": run_features,
        "head": run_head,
    }
    reference.warm_up()
    results = []
    for name, step in steps.items():
        for _ in range(max(features.warmup_calls, head.warmup_calls)):
            step()

        def measure_more(count: int, name: str = name, step: Callable[[], object] = step) -> Rounds:
            return measure({name: step}, reference, count)

        estimate = _seconds_per_round(step, reference)
        rounds = rounds_for(estimate, ledger.max_time, ledger.min_rounds)
        results.append(
            ledger.settle(case, stage_key(case, name), measure_more(rounds), measure_more)
        )
    return results
