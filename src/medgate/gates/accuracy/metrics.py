"""What clinicians ask of a classifier, per case: sensitivity, specificity, accuracy, AUROC.

Every figure comes from ``sklearn.metrics``. Multi-class models are scored one-vs-rest for the
class their spec names positive (glioma, moderate dementia, pneumonia, artifact), because a missed
positive is the error a screen exists to avoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# sklearn.metrics is imported where a metric is computed: importing it costs about 1.5 s, which
# every pytest process that loads the plugin would pay, `pytest --help` and collection included.

#: The metrics of an evaluation, in the order tables show them.
METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auroc")

#: Metrics that are a proportion of one subset of the test split: the samples each counts.
PROPORTIONS = {"accuracy": "all", "sensitivity": "positives", "specificity": "negatives"}


@dataclass(frozen=True)
class Evaluation:
    """Per-sample outcome of one case on a test split.

    ``positive_scores`` (softmax probability of the positive class) is None for an evaluation
    rebuilt from a stored baseline, which keeps predictions but not scores.
    """

    labels: np.ndarray
    predictions: np.ndarray
    positive_index: int
    positive_scores: np.ndarray | None = None

    @classmethod
    def from_logits(
        cls, labels: np.ndarray, logits: torch.Tensor, positive_index: int
    ) -> Evaluation:
        logits = logits.detach().float().cpu()
        if logits.ndim != 2 or logits.shape[0] != len(labels):
            raise ValueError(
                f"logits of shape {tuple(logits.shape)} do not score {len(labels)} samples"
            )
        probabilities = torch.softmax(logits, dim=1)
        return cls(
            labels=np.asarray(labels, dtype=np.int64),
            predictions=logits.argmax(dim=1).numpy().astype(np.int64),
            positive_index=positive_index,
            positive_scores=probabilities[:, positive_index].numpy().astype(np.float64),
        )

    def to_record(self, dataset_sha256: str) -> dict[str, Any]:
        """JSON-ready: what a base worker replies and ``<cache>/evaluations/side-*.json`` keep."""
        scores = self.positive_scores
        return {
            "labels": self.labels.tolist(),
            "predictions": self.predictions.tolist(),
            "positive_index": self.positive_index,
            "positive_scores": None if scores is None else scores.tolist(),
            "dataset": dataset_sha256,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Evaluation:
        scores = record["positive_scores"]
        return cls(
            labels=np.asarray(record["labels"], dtype=np.int64),
            predictions=np.asarray(record["predictions"], dtype=np.int64),
            positive_index=int(record["positive_index"]),
            positive_scores=None if scores is None else np.asarray(scores, dtype=float),
        )

    @property
    def samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_positive(self) -> np.ndarray:
        return np.asarray(self.labels == self.positive_index, dtype=bool)

    @property
    def predicted_positive(self) -> np.ndarray:
        return np.asarray(self.predictions == self.positive_index, dtype=bool)

    def correct(self, metric: str) -> np.ndarray:
        """Per sample, whether it counts as a success for a proportion ``metric``."""
        if metric == "accuracy":
            return np.asarray(self.predictions == self.labels, dtype=bool)
        if metric == "sensitivity":
            return self.predicted_positive
        if metric == "specificity":
            return ~self.predicted_positive
        raise KeyError(f"{metric!r} is not a proportion; proportions are {', '.join(PROPORTIONS)}")

    def counted(self, metric: str) -> np.ndarray:
        """Per sample, whether a proportion ``metric`` counts it at all."""
        subset = PROPORTIONS[metric]
        if subset == "positives":
            return self.is_positive
        if subset == "negatives":
            return ~self.is_positive
        return np.ones(self.samples, dtype=bool)

    def metrics(self) -> dict[str, float | None]:
        """Every metric of ``METRICS``; AUROC is None without scores."""
        import sklearn.metrics as skm

        truth, predicted = self.is_positive, self.predicted_positive
        return {
            "accuracy": float(skm.accuracy_score(self.labels, self.predictions)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(self.labels, self.predictions)),
            "sensitivity": float(
                skm.recall_score(truth, predicted, pos_label=True, zero_division=0)
            ),
            "specificity": float(
                skm.recall_score(truth, predicted, pos_label=False, zero_division=0)
            ),
            "auroc": self.auroc(),
        }

    def auroc(self, index: np.ndarray | None = None) -> float | None:
        import sklearn.metrics as skm

        if self.positive_scores is None:
            return None
        truth = self.is_positive if index is None else self.is_positive[index]
        scores = self.positive_scores if index is None else self.positive_scores[index]
        if truth.all() or not truth.any():
            return None
        return float(skm.roc_auc_score(truth, scores))

    def metric(self, name: str, index: np.ndarray | None = None) -> float | None:
        """One metric, optionally on a resample ``index`` of the samples (for the bootstrap)."""
        if name == "auroc":
            return self.auroc(index)
        labels = self.labels if index is None else self.labels[index]
        predictions = self.predictions if index is None else self.predictions[index]
        if name == "balanced_accuracy":
            import sklearn.metrics as skm

            return float(skm.balanced_accuracy_score(labels, predictions))
        resampled = Evaluation(labels, predictions, self.positive_index)
        counted = resampled.counted(name)
        if not counted.any():
            return None
        return float(resampled.correct(name)[counted].mean())


@dataclass(frozen=True)
class Flips:
    """How a candidate's top-1 predictions differ from its reference's, sample by sample."""

    agreement: float
    fixed: int
    broken: int

    @classmethod
    def between(cls, reference: Evaluation, candidate: Evaluation) -> Flips:
        if reference.samples != candidate.samples:
            raise ValueError(
                f"the reference scored {reference.samples} samples, the candidate "
                f"{candidate.samples}; they must be evaluated on the same split"
            )
        ref_ok = reference.predictions == reference.labels
        now_ok = candidate.predictions == candidate.labels
        same = reference.predictions == candidate.predictions
        return cls(
            agreement=float(same.mean()),
            fixed=int((~ref_ok & now_ok).sum()),
            broken=int((ref_ok & ~now_ok).sum()),
        )
