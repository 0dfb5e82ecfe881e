"""Does a backend compute what eager fp32 computes? Top-1 agreement and max |delta logit|."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from tabulate import tabulate

from medgate.core.matrix import Case
from medgate.core.precision import PRECISIONS, Precision
from medgate.core.registry import get_spec
from medgate.core.verdict import Verdict


def tolerance_for(case: Case) -> Precision:
    """``case``'s precision with its tolerances, the max |delta logit| widened where its model
    declares so (``ModelSpec.agreement``)."""
    precision = PRECISIONS[case.precision]
    limit = get_spec(case.model).agreement.max_logit_delta_for(
        case.key(batch=False, device=False), case.device, precision.max_logit_delta
    )
    return replace(precision, max_logit_delta=limit)


@dataclass(frozen=True)
class Agreement:
    samples: int
    top1: float
    max_abs_delta: float
    relative_delta: float

    @classmethod
    def between(cls, reference: torch.Tensor, candidate: torch.Tensor) -> Agreement:
        reference, candidate = reference.float().cpu(), candidate.float().cpu()
        if reference.shape != candidate.shape:
            raise ValueError(
                f"logits of shape {tuple(candidate.shape)} cannot be compared with the "
                f"reference's {tuple(reference.shape)}"
            )
        same = (reference.argmax(dim=1) == candidate.argmax(dim=1)).float().mean()
        delta = float((reference - candidate).abs().max())
        scale = max(1.0, float(reference.abs().max()))
        return cls(
            samples=int(reference.shape[0]),
            top1=float(same),
            max_abs_delta=delta,
            relative_delta=delta / scale,
        )

    def failure(self, precision: Precision) -> str | None:
        """A message naming what is out of tolerance, or None."""
        problems = []
        if not self.relative_delta <= precision.max_logit_delta:
            problems.append(
                f"max |delta logit| {self.max_abs_delta:.3g} ({self.relative_delta:.3g} relative) "
                f"> {precision.max_logit_delta:g} allowed for {precision.name}"
            )
        if self.top1 < precision.min_top1_agreement:
            problems.append(
                f"top-1 agreement {self.top1:.1%} < {precision.min_top1_agreement:.1%} allowed for "
                f"{precision.name}"
            )
        if not problems:
            return None
        return f"disagrees with eager fp32 on {self.samples} test images: " + "; ".join(problems)


def summary_table(results: dict[Case, Agreement]) -> str:
    """One row per checked case: agreement, its tolerance (the precision's, or the model's
    widening) and the verdict."""
    rows = []
    for case, agreement in sorted(results.items()):
        precision = tolerance_for(case)
        failure = agreement.failure(precision)
        rows.append(
            [
                case.id,
                f"{agreement.top1:.1%}",
                f"{agreement.relative_delta:.2g}",
                f">={precision.min_top1_agreement:.0%}, <={precision.max_logit_delta:g}",
                str(Verdict.OK if failure is None else Verdict.BEYOND_LIMIT),
            ]
        )
    headers = ["case", "top-1 agreement", "max |delta logit| (rel.)", "tolerance", "verdict"]
    table: str = tabulate(rows, headers=headers)
    return table
