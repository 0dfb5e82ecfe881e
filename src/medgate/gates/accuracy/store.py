"""Stored accuracy baselines: one reviewed JSON file per model, ``baselines/accuracy/<model>.json``.

The file holds one section per dataset the model was evaluated on (its bundled data, the user's
real data), each naming the dataset's SHA-256 and the versions of the run that last recorded into
it, and per case the checkpoint it was measured with, the metrics and the per-image predictions
(so the comparison with a later run is paired). The checkpoint is per case because a narrow
``--update-baselines`` re-records some cases and keeps the rest, which may have been measured
with other weights. Files are written only on ``--update-baselines``, atomically, with sorted
keys, so a PR diff shows exactly which figure moved.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgate.core.files import BaselineError, rerecord_hint
from medgate.core.store import Fields, Store
from medgate.gates.accuracy.metrics import METRICS

#: Schema 2 named one checkpoint per section; it reads as that checkpoint on every case.
SCHEMA = 3
#: Predictions are stored one character per image: class 0-9 then a-z.
_SYMBOLS = string.digits + string.ascii_lowercase


@dataclass(frozen=True)
class DatasetIdentity:
    name: str
    source: str
    sha256: str


@dataclass(frozen=True)
class CheckpointIdentity:
    """``tensors_sha256`` identifies the weights (``medgate.training.weights_sha256``), not the
    file. ``recipe_key`` is set for checkpoints trained by the project's recipe: two checkpoints
    with one key were trained from the same data, code, hyper-parameters and kernel pin, and so
    hold the same tensors."""

    tensors_sha256: str
    recipe_key: str | None


@dataclass(frozen=True)
class CaseRecord:
    metrics: Mapping[str, float | None]
    predictions: str
    checkpoint: CheckpointIdentity

    @property
    def samples(self) -> int:
        return len(self.predictions)

    def prediction_array(self) -> np.ndarray:
        return np.array([_SYMBOLS.index(symbol) for symbol in self.predictions], dtype=np.int64)

    @classmethod
    def of(
        cls,
        metrics: Mapping[str, float | None],
        predictions: np.ndarray,
        checkpoint: CheckpointIdentity,
    ) -> CaseRecord:
        if predictions.size and int(predictions.max()) >= len(_SYMBOLS):
            raise ValueError(f"cannot store predictions of more than {len(_SYMBOLS)} classes")
        return cls(dict(metrics), "".join(_SYMBOLS[int(p)] for p in predictions), checkpoint)


@dataclass
class DatasetSection:
    dataset: DatasetIdentity
    versions: Mapping[str, str]
    cases: dict[str, CaseRecord] = field(default_factory=dict)


@dataclass
class ModelBaseline:
    model: str
    positive_class: str
    sections: dict[str, DatasetSection] = field(default_factory=dict)


def baseline_path(directory: Path, model: str) -> Path:
    return directory / "accuracy" / f"{model}.json"


class OldSchemaError(BaselineError):
    """A file of another schema: unusable for comparing, replaced whole by a re-record."""


class AccuracyStore(Store[ModelBaseline]):
    """Predictions are checked against the model's ``num_classes``."""

    lane = "accuracy"
    schema = SCHEMA
    readable = (2,)

    def __init__(self, num_classes: int = len(_SYMBOLS)) -> None:
        self.num_classes = num_classes

    def schema_error(self, fields: Fields, schema: Any) -> BaselineError:
        return OldSchemaError(
            f"{fields.path}: field schema: is {schema!r}, this medgate reads schema "
            f"{' or '.join(map(str, (*self.readable, SCHEMA)))} "
            "(schema 1 identified a checkpoint by its file's bytes, not its tensors, and "
            "recorded weights trained on unpinned kernels); re-record "
            f"it with {rerecord_hint('accuracy')} and review the diff"
        )

    def dump(self, value: ModelBaseline) -> dict[str, Any]:
        return {
            "model": value.model,
            "positive_class": value.positive_class,
            "datasets": {
                name: {
                    "dataset": vars(section.dataset),
                    "versions": dict(section.versions),
                    "cases": {
                        key: {
                            "checkpoint": vars(record.checkpoint),
                            "metrics": dict(record.metrics),
                            "predictions": record.predictions,
                        }
                        for key, record in section.cases.items()
                    },
                }
                for name, section in value.sections.items()
            },
        }

    def parse(self, payload: dict[str, Any], fields: Fields, schema: int) -> ModelBaseline:
        baseline = ModelBaseline(
            model=fields.text(payload, "model", "(top level)"),
            positive_class=fields.text(payload, "positive_class", "(top level)"),
        )
        reader = _Sections(fields, self.num_classes, schema)
        for name, raw in fields.mapping(payload.get("datasets"), "datasets").items():
            baseline.sections[name] = reader.section(raw, f"datasets.{name}")
        return baseline


class _Sections:
    """Reads a file's dataset sections field by field, naming the first bad one."""

    def __init__(self, fields: Fields, num_classes: int, schema: int) -> None:
        self.fields = fields
        self.num_classes = num_classes
        self.schema = schema

    def checkpoint(self, raw: Any, where: str) -> CheckpointIdentity:
        checkpoint = self.fields.mapping(raw, where)
        recipe_key = checkpoint.get("recipe_key")
        if recipe_key is not None and not isinstance(recipe_key, str):
            raise self.fields.fail(f"{where}.recipe_key", "expected a string or null")
        return CheckpointIdentity(
            tensors_sha256=self.fields.text(checkpoint, "tensors_sha256", where),
            recipe_key=recipe_key,
        )

    def section(self, raw: Any, where: str) -> DatasetSection:
        fields = self.fields
        body = fields.mapping(raw, where)
        dataset = fields.mapping(body.get("dataset"), f"{where}.dataset")
        shared = (
            self.checkpoint(body.get("checkpoint"), f"{where}.checkpoint")
            if self.schema == 2
            else None
        )
        versions = fields.mapping(body.get("versions"), f"{where}.versions")
        section = DatasetSection(
            dataset=DatasetIdentity(
                name=fields.text(dataset, "name", f"{where}.dataset"),
                source=fields.text(dataset, "source", f"{where}.dataset"),
                sha256=fields.text(dataset, "sha256", f"{where}.dataset"),
            ),
            versions={k: str(v) for k, v in versions.items()},
        )
        cases = fields.mapping(body.get("cases"), f"{where}.cases")
        for key, record in cases.items():
            section.cases[key] = self.case(record, f"{where}.cases.{key}", shared)
        return section

    def case(self, raw: Any, where: str, shared: CheckpointIdentity | None) -> CaseRecord:
        fields = self.fields
        body = fields.mapping(raw, where)
        checkpoint = shared or self.checkpoint(body.get("checkpoint"), f"{where}.checkpoint")
        predictions = fields.text(body, "predictions", where)
        symbols = _SYMBOLS[: self.num_classes]
        if not predictions or set(predictions) - set(symbols):
            raise fields.fail(
                f"{where}.predictions",
                f"expected one class symbol per test image, each one of {symbols!r} for the "
                f"model's {self.num_classes} classes",
            )
        metrics = fields.mapping(body.get("metrics"), f"{where}.metrics")
        checked: dict[str, float | None] = {}
        for name in METRICS:
            if name not in metrics:
                raise fields.fail(f"{where}.metrics.{name}", "missing")
            value = metrics[name]
            if value is None:
                checked[name] = None
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise fields.fail(f"{where}.metrics.{name}", f"expected a number, found {value!r}")
            elif not 0.0 <= value <= 1.0:
                raise fields.fail(f"{where}.metrics.{name}", f"{value} is not within [0, 1]")
            else:
                checked[name] = float(value)
        return CaseRecord(checked, predictions, checkpoint)


to_json = AccuracyStore().dumps
write_baseline = AccuracyStore().write


def read_baseline(path: Path, num_classes: int = len(_SYMBOLS)) -> ModelBaseline | None:
    """The file's baseline, None when there is none; ``BaselineError`` when it is unusable
    (a prediction outside the model's ``num_classes`` included)."""
    return AccuracyStore(num_classes).read(path)
