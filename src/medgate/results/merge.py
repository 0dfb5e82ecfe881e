"""Shards of one run (a job matrix split by model) merged into one document."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from medgate.results.schema import SCHEMA_ID, ResultsError


def merge(documents: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One document of every shard of ``documents`` (name, document), in the order given.

    Shards may split a run by model or by lane: a case in several shards gets the figures of
    each. The same figure or the same judged row from two shards has no single value to
    report: the merge refuses it and names both files. Shard records that are equal (halves of
    one run) are kept once."""
    if not documents:
        raise ResultsError("no results file given; name one or more results.json files")
    shards: list[dict[str, Any]] = []
    cases: dict[str, dict[str, Any]] = {}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    owners: dict[tuple[str, ...], str] = {}

    def claim(key: tuple[str, ...], source: str, what: str) -> None:
        if key in owners:
            raise ResultsError(
                f"{source}: field {what}: {' '.join(key)!r} is also in {owners[key]}; shards must "
                "not measure the same figure twice: split the run by model (--models) or by "
                "lane (-m) and merge once"
            )
        owners[key] = source

    for source, document in documents:
        index = []
        for shard in document["shards"]:
            if shard not in shards:
                shards.append(copy.deepcopy(shard))
            index.append(shards.index(shard))
        for case in document["cases"]:
            merged = cases.setdefault(case["id"], {"shard": index[case["shard"]]})
            for name, value in case.items():
                if name == "shard" or merged.get(name) == value:
                    continue
                claim(("case", case["id"], name), source, "cases")
                merged[name] = copy.deepcopy(value)
        for row in document["measurements"]:
            key = (row["case"], row["gate"], row["metric"])
            claim(("row", *key), source, "measurements")
            rows[key] = {**copy.deepcopy(row), "shard": index[row["shard"]]}
    return {
        "schema": SCHEMA_ID,
        "shards": shards,
        "cases": sorted(cases.values(), key=lambda e: e["id"]),
        "measurements": [rows[key] for key in sorted(rows)],
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
