"""Shards of one run (a job matrix split by model) merged into one document."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from medgate.results.schema import SCHEMA_ID, ResultsError


def merge(documents: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One document of every shard of ``documents`` (name, document), in the order given.

    A case measured by two shards has no single figure to report: the merge refuses it and
    names both files. Shard records that are equal (halves of one run) are kept once."""
    if not documents:
        raise ResultsError("no results file given; name one or more results.json files")
    shards: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for source, document in documents:
        index = []
        for shard in document["shards"]:
            if shard not in shards:
                shards.append(copy.deepcopy(shard))
            index.append(shards.index(shard))
        for case in document["cases"]:
            if case["id"] in owner:
                raise ResultsError(
                    f"{source}: field cases: case {case['id']!r} is also in {owner[case['id']]}; "
                    "shards must not overlap: split the run by model (--models) and merge once"
                )
            owner[case["id"]] = source
            cases.append({**copy.deepcopy(case), "shard": index[case["shard"]]})
        rows += [{**copy.deepcopy(r), "shard": index[r["shard"]]} for r in document["measurements"]]
    return {
        "schema": SCHEMA_ID,
        "shards": shards,
        "cases": sorted(cases, key=lambda e: e["id"]),
        "measurements": sorted(rows, key=lambda r: (r["case"], r["gate"], r["metric"])),
    }


def split(document: dict[str, Any], models: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document cut in two by model: ``models``' cases, and the rest. Each half keeps the
    shard records its cases refer to; the inverse of ``merge`` for a one-shard document."""
    halves = []
    for keep in (True, False):
        cases = [c for c in document["cases"] if (c["model"] in models) == keep]
        ids = {c["id"] for c in cases}
        halves.append(
            {
                "schema": document["schema"],
                "shards": copy.deepcopy(document["shards"]),
                "cases": copy.deepcopy(cases),
                "measurements": [
                    copy.deepcopy(r) for r in document["measurements"] if r["case"] in ids
                ],
            }
        )
    return halves[0], halves[1]
