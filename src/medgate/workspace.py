"""What one gate run builds and shares between tests: datasets, trained models, sessions.

Everything is built on first use and cached for the run; trained checkpoints, generated
datasets and exported graphs are also cached on disk under ``SuiteConfig.cache_dir``.
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from medgate.agreement import Agreement
from medgate.backends.base import BuildContext, Session
from medgate.config import SuiteConfig
from medgate.data import Dataset, load_dataset, preprocess, sha256_file
from medgate.facts import ModelFacts, model_facts
from medgate.matrix import Case
from medgate.registry import ModelSpec, get_backend, get_spec
from medgate.training import ensure_checkpoint, load_trained


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    sha256: str
    trained_now: bool


class Workspace:
    #: Prepared sessions kept alive at once; cases are ordered so that each one's uses are
    #: adjacent, and older ones are dropped to bound memory over a large matrix.
    max_sessions = 4

    def __init__(self, config: SuiteConfig, stream: IO[str] | None = None) -> None:
        self.config = config
        self.stream = stream or sys.stderr
        self._datasets: dict[str, Dataset] = {}
        self._weights: dict[str, ResolvedWeights] = {}
        self._models: dict[str, nn.Module] = {}
        self._sessions: OrderedDict[tuple[str, str, str, int, str], Session] = OrderedDict()
        self.facts = cache(self._facts)
        self.inputs = cache(self._inputs)
        self.calibration_batches = cache(self._calibration_batches)
        # Every backend x precision of a model and size is checked against the same logits.
        self.reference_logits = cache(self._reference_logits)
        #: Derived models (a PT2E-quantized graph) shared by every build of the run.
        self._memo: dict[str, Any] = {}
        #: Agreement of each checked case with eager fp32, for the end-of-run table.
        self.agreements: dict[Case, Agreement] = {}
        # Exports live for one run: a cache keyed by weights alone would keep serving the graph
        # of yesterday's forward() after a code change, and hide exactly the regression we gate.
        self._artifacts = tempfile.TemporaryDirectory(prefix="medgate-artifacts-")

    def close(self) -> None:
        self._sessions.clear()
        self._memo.clear()
        self._artifacts.cleanup()

    def spec(self, model: str) -> ModelSpec:
        return get_spec(model)

    def dataset(self, model: str) -> Dataset:
        """The user's dataset for ``model`` if given, else its bundled recipe's."""
        owner = self.spec(model).checkpoint_owner
        key = model if model in self.config.datasets else owner
        if key not in self._datasets:
            spec = self.spec(key)
            source = self.config.datasets.get(key) or spec.dataset.materialize(
                self.config.cache_dir
            )
            self._datasets[key] = load_dataset(source, spec.num_classes, spec.classes)
        return self._datasets[key]

    def weights(self, model: str) -> ResolvedWeights:
        """The user's checkpoint if given, else the recipe's (trained now when missing)."""
        if model not in self._weights:
            owner = self.spec(model).checkpoint_owner
            given = self.config.checkpoints.get(model) or self.config.checkpoints.get(owner)
            if given is not None:
                path, trained_now = given, False
            else:
                result = ensure_checkpoint(
                    self.spec(owner), self.dataset(owner), self.config.cache_dir, self.stream
                )
                path, trained_now = result.path, result.trained_now
            self._weights[model] = ResolvedWeights(path, sha256_file(path), trained_now)
        return self._weights[model]

    def trained_model(self, model: str) -> nn.Module:
        """The eager fp32 reference on CPU. Backends get a copy, never this instance."""
        if model not in self._models:
            self._models[model] = load_trained(self.spec(model), self.weights(model).path)
        return self._models[model]

    def _inputs(self, model: str, size: int, count: int) -> torch.Tensor:
        """The first ``count`` test images at ``size``, repeated if the split is smaller."""
        spec = self.spec(model)
        test = self.dataset(model).split("test")
        index = torch.arange(count) % len(test)
        images = test.images[index.numpy()]
        return preprocess(images, size, spec.mean, spec.std, spec.in_chans)

    def _calibration_batches(self, model: str, size: int) -> tuple[torch.Tensor, ...]:
        """The calibration recipe's images of its split (never ``test``), preprocessed, batched."""
        recipe = self.config.calibration
        spec = self.spec(model)
        split = self.dataset(model).split(recipe.split)
        count = min(recipe.samples, len(split))
        images = preprocess(split.images[:count], size, spec.mean, spec.std, spec.in_chans)
        return tuple(images.split(recipe.batch))

    def _facts(self, model: str, size: int) -> ModelFacts:
        return model_facts(self.trained_model(model), self.inputs(model, size, 1))

    def artifact_dir(self, case: Case) -> Path:
        return Path(self._artifacts.name) / f"{case.model}-{case.input_size}px-{case.device}"

    def session(self, case: Case) -> Session:
        key = case.session_key
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        model = copy.deepcopy(self.trained_model(case.model))
        context = BuildContext(
            case,
            self.artifact_dir(case),
            self.config.threads,
            weights_sha256=self.weights(case.model).sha256,
            calibration=lambda: self.calibration_batches(case.model, case.input_size),
            calibration_recipe=self.config.calibration,
            memo=self._memo,
        )
        example = self.inputs(case.model, case.input_size, 1)
        started = time.perf_counter()
        session = get_backend(case.backend).prepare(model, example, context)
        session.prepare_s = time.perf_counter() - started
        self._sessions[key] = session
        return session

    def check_agreement(self, case: Case, candidate: torch.Tensor) -> Agreement:
        """Compare ``candidate`` logits with eager fp32's on the same inputs, and record it."""
        reference = self.reference_logits(case.model, case.input_size, case.batch)
        agreement = Agreement.between(reference, candidate)
        self.agreements[case] = agreement
        return agreement

    def _reference_logits(self, model: str, size: int, count: int) -> torch.Tensor:
        with torch.inference_mode():
            logits: torch.Tensor = self.trained_model(model)(self.inputs(model, size, count))
        return logits
