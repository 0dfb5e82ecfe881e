"""The versioned schema of ``results.json`` (JSON Schema, checked with ``jsonschema``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_ID = "medgate-results/1"

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_VERDICTS = [
    "same",
    "REGRESSED",
    "TOO NOISY",
    "ok",
    "BEYOND LIMIT",
    "STALE BASELINE",
    "no baseline",
    "other machine",
    "recorded",
    "identical to base",
    "n/a",
]

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "medgate results: every case, every gate's measurement, reference and verdict",
    "type": "object",
    "required": ["schema", "shards", "cases", "measurements"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "shards": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "name",
                    "started",
                    "wall_s",
                    "lanes_s",
                    "outcome",
                    "machine",
                    "threads",
                    "versions",
                    "reference",
                    "peaks",
                    "power",
                    "notes",
                ],
                "properties": {
                    "name": {"type": "string"},
                    "started": {"type": "string"},
                    "wall_s": {"type": "number", "minimum": 0},
                    "lanes_s": {"type": "object", "additionalProperties": {"type": "number"}},
                    "steps_s": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                        },
                    },
                    "outcome": {"enum": ["passed", "failed", "interrupted", "error"]},
                    "machine": {
                        "type": "object",
                        "required": ["fingerprint_id", "facts"],
                        "properties": {
                            "fingerprint_id": {"type": "string"},
                            "facts": {"type": "object"},
                        },
                    },
                    "threads": {"type": "integer", "minimum": 1},
                    "versions": {"type": "object", "additionalProperties": {"type": "string"}},
                    "reference": {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {"kind": {"enum": ["base", "baselines"]}},
                    },
                    "peaks": {
                        "type": ["object", "null"],
                        "required": ["device", "gemm_size", "threads", "by_dtype", "missing"],
                        "properties": {
                            "bandwidth": _NUMBER_OR_NULL,
                            "by_dtype": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "required": ["dtype", "flops", "kernel", "kernels", "native"],
                                    "properties": {"flops": {"type": "number", "minimum": 0}},
                                },
                            },
                        },
                    },
                    "power": {
                        "type": ["object", "null"],
                        "required": ["source", "watts", "detail"],
                        "properties": {"source": {"enum": ["rapl", "nvml", "assumed"]}},
                    },
                    "notes": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "cases": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "model",
                    "backend",
                    "precision",
                    "input_size",
                    "batch",
                    "device",
                    "shard",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "weights_from": {"type": "string"},
                    "input_size": {"type": "integer", "minimum": 1},
                    "batch": {"type": "integer", "minimum": 1},
                    "device": {"enum": ["cpu", "cuda"]},
                    "shard": {"type": "integer", "minimum": 0},
                    "skipped": {"type": "string"},
                    "latency": {
                        "type": "object",
                        "required": ["p50_ms", "p95_ms", "samples_per_s", "rounds"],
                        "properties": {
                            "p50_ms": {"type": "number"},
                            "p95_ms": {"type": "number"},
                            "efficiency": {"type": "number", "minimum": 0},
                            "energy_mj_per_sample": {"type": "number", "minimum": 0},
                        },
                    },
                    "accuracy": {"type": "object", "additionalProperties": {"type": "number"}},
                    "memory": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
        },
        "measurements": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "case",
                    "shard",
                    "gate",
                    "metric",
                    "unit",
                    "reference",
                    "now",
                    "delta",
                    "ci",
                    "verdict",
                    "why",
                    "fix",
                ],
                "properties": {
                    "case": {"type": "string"},
                    "shard": {"type": "integer", "minimum": 0},
                    "gate": {"enum": ["latency", "accuracy", "memory", "agreement", "base"]},
                    "reference": {
                        "type": ["object", "null"],
                        "required": ["kind", "source", "value"],
                        "properties": {
                            "kind": {
                                "enum": ["baseline", "base", "fp32", "floor", "ceiling", "limit"]
                            },
                            "value": _NUMBER_OR_NULL,
                        },
                    },
                    "now": _NUMBER_OR_NULL,
                    "delta": _NUMBER_OR_NULL,
                    "ci": {
                        "type": ["array", "null"],
                        "items": {"type": "number"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "verdict": {"enum": _VERDICTS},
                    "known": {"type": "string"},
                    "samples": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "number"}},
                    },
                },
            },
        },
    },
}


class ResultsError(ValueError):
    """A results file that cannot be read: names the file, the field and the fix."""


def validate(document: Any, source: str) -> dict[str, Any]:
    """``document`` if it follows ``SCHEMA``; else ``ResultsError`` naming the field."""
    import jsonschema  # a few hundred milliseconds: only runs that write or read a report

    if isinstance(document, dict) and document.get("schema") not in (None, SCHEMA_ID):
        raise ResultsError(
            f"{source}: field schema: {document.get('schema')!r} is not {SCHEMA_ID!r}; "
            "rebuild it with this medgate (re-run the lane), or read it with the medgate "
            "that wrote it"
        )
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(document)
    )
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ResultsError(
            f"{source}: field {where}: {error.message}; this is not a results.json medgate "
            "wrote, or it was edited: re-run the lane to write it again"
        )
    assert isinstance(document, dict)
    return document


def load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsError(
            f"{path}: not a readable JSON file ({error}); give the results.json a medgate run "
            "wrote (--medgate-report)"
        ) from error
    return validate(document, str(path))
