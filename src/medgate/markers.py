"""medgate's pytest markers: their help text, ``@pytest.mark.medgate``'s options, and the marks
each generated case gets (device, smoke, skip with its reason, a declared known disagreement)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from medgate.core import machine
from medgate.core.matrix import Case, skip_reason
from medgate.core.registry import get_spec

MARKERS = {
    "cpu": "the case runs on the CPU",
    "cuda": "the case runs on a CUDA GPU (skipped with a reason where there is none)",
    "smoke": "one input size per model and backend: the quick pre-merge lane",
    "latency": "timed with pytest-benchmark, judged against baselines/latency",
    "throughput": (
        "timed at --throughput-batch (samples/s): the nightly lane's; the pre-merge lane times "
        "batch 1"
    ),
    "stages": "preprocessing, feature extractor and head timed apart (p50/p95/p99 each)",
    "agreement": "a backend's logits checked against eager fp32",
    "accuracy": "metrics on the model's test split",
    "memory": "peak memory, measured apart from the timed tests",
    "medgate(batch='latency'|'throughput'|'agreement'|'accuracy')": (
        "which batch the test's cases use: 1, --throughput-batch, --agreement-samples or "
        "--accuracy-batch"
    ),
}


BATCHES = ("latency", "throughput", "agreement", "accuracy")


@dataclasses.dataclass(frozen=True)
class TestOptions:
    """Keyword arguments of ``@pytest.mark.medgate``; unknown ones are an error."""

    batch: Literal["latency", "throughput", "agreement", "accuracy"] = "latency"
    #: The memory figure the test measures (its ceiling becomes a ``limit_memory`` marker).
    memory: Literal["inference", "session"] | None = None

    @classmethod
    def from_marker(cls, marker: pytest.Mark | None, where: str) -> TestOptions:
        if marker is None:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(marker.kwargs) - known
        if marker.args or unknown:
            raise pytest.UsageError(
                f"{where}: @pytest.mark.medgate takes only {', '.join(sorted(known))} "
                f"as keywords (got args {marker.args}, keywords {sorted(unknown)})"
            )
        options = cls(**marker.kwargs)
        if options.batch not in BATCHES:
            raise pytest.UsageError(f"{where}: batch must be one of {', '.join(BATCHES)}")
        if options.memory not in (None, "inference", "session"):
            raise pytest.UsageError(f"{where}: memory must be 'inference' or 'session'")
        return options


def case_marks(
    case: Case, batch: str, dataset: str, against_base: bool = False
) -> list[pytest.MarkDecorator]:
    spec = get_spec(case.model)
    marks = [getattr(pytest.mark, case.device)]
    if case.input_size == spec.default_smoke_size:
        marks.append(pytest.mark.smoke)
    reason = skip_reason(case)
    if reason is not None:
        marks.append(pytest.mark.skip(reason=reason))
    for known in spec.known_disagreements:
        if batch in known.gates and known.matches(
            case.backend,
            case.precision,
            case.input_size,
            dataset,
            machine.cpu().flags,
            case.device,
            against_base,
        ):
            marks.append(pytest.mark.xfail(strict=True, reason=f"known: {known.reason}"))
            break
    return marks
