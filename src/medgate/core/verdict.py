"""The one vocabulary every gate's verdicts use, in tests, tables and messages."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """A comparison with a reference (a stored baseline or the base revision) ends SAME,
    REGRESSED or TOO NOISY; an absolute limit (floor, ceiling, budget, agreement tolerance)
    ends OK or BEYOND LIMIT. The rest say why nothing was judged."""

    SAME = "same"
    REGRESSED = "REGRESSED"
    TOO_NOISY = "TOO NOISY"
    OK = "ok"
    BEYOND_LIMIT = "BEYOND LIMIT"
    STALE_BASELINE = "STALE BASELINE"
    NO_BASELINE = "no baseline"
    OTHER_MACHINE = "other machine"
    RECORDED = "recorded"
    IDENTICAL = "identical to base"
    NOT_APPLICABLE = "n/a"

    @property
    def fails(self) -> bool:
        return self in FAILING


#: Verdicts that fail the test they belong to.
FAILING = frozenset({Verdict.REGRESSED, Verdict.BEYOND_LIMIT, Verdict.STALE_BASELINE})

#: From most to least in need of a reviewer's look: a case's row shows the first it has.
SEVERITY = (
    Verdict.STALE_BASELINE,
    Verdict.BEYOND_LIMIT,
    Verdict.REGRESSED,
    Verdict.TOO_NOISY,
    Verdict.NO_BASELINE,
    Verdict.OTHER_MACHINE,
    Verdict.SAME,
    Verdict.IDENTICAL,
    Verdict.RECORDED,
    Verdict.OK,
    Verdict.NOT_APPLICABLE,
)


def worst(verdicts: list[Verdict] | set[Verdict]) -> Verdict:
    """The verdict a row of several findings shows."""
    present = set(verdicts)
    return next((v for v in SEVERITY if v in present), Verdict.OK)


class GateFailure(AssertionError):
    """What a gate raises in a test's call phase: one failure path for every gate, so pytest's
    own ``xfail(strict=True)`` of a declared known disagreement still applies to it."""


def require(case_id: str, problems: list[str]) -> None:
    """Fail the running test with every problem of ``case_id``, or return."""
    if problems:
        raise GateFailure(f"{case_id}: " + " | ".join(problems))
