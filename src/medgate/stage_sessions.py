"""A staged model's feature extractor and head, each built on its own by a case's backend and
precision, for the stage timing of the latency lane."""

from __future__ import annotations

import torch

from medgate.backends.base import Session
from medgate.core.matrix import Case
from medgate.core.registry import create_model
from medgate.core.stages import StagedClassifier
from medgate.workspace import Workspace


def stage_sessions(workspace: Workspace, case: Case) -> tuple[Session, Session]:
    """The model's feature extractor and head, each built on its own by ``case``'s backend
    and precision (static int8 calibrates the head on the features of the calibration
    images). Not cached: one test per case uses them."""
    trained = workspace.trained_model(case.model, case.input_size)
    if not isinstance(trained, StagedClassifier):
        raise TypeError(why_no_stages(workspace, case.model))
    example = workspace.inputs(case.model, case.input_size, 1)

    def head_calibration() -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return tuple(
                trained.features(images)
                for images in workspace.calibration_batches(case.model, case.input_size)
            )

    with torch.no_grad():
        features_example = trained.features(example)
    directory = workspace.artifact_dir(case)
    features = workspace.prepare(
        case,
        trained.features,
        example,
        lambda: workspace.calibration_batches(case.model, case.input_size),
        directory / "stage-features",
        workspace.memo,
        stage="features",
        cache_dir=workspace.graph_cache,
    )
    head = workspace.prepare(
        case,
        trained.head,
        features_example,
        head_calibration,
        directory / "stage-head",
        workspace.memo,
        stage="head",
        cache_dir=workspace.graph_cache,
    )
    return features, head


def why_no_stages(workspace: Workspace, model: str) -> str | None:
    """Why ``model`` cannot be timed stage by stage, or None when it can."""
    trained = create_model(model)
    if isinstance(trained, StagedClassifier):
        return None
    return (
        f"{model} is a {type(trained).__name__}, not a medgate.StagedClassifier: it has no "
        "features and head to time apart"
    )
