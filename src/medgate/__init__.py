"""medgate: a pytest-benchmark performance-regression gate for medical-imaging classifiers."""

from medgate.data import SyntheticRecipe
from medgate.matrix import Case
from medgate.policy import AccuracyPolicy, Floor, LatencyPolicy
from medgate.registry import (
    KnownDisagreement,
    ModelSpec,
    create_model,
    get_spec,
    list_backends,
    list_models,
    register_backend,
    register_model,
)
from medgate.stages import StagedClassifier
from medgate.training import TrainRecipe

__version__ = "0.1.0"

__all__ = [
    "AccuracyPolicy",
    "Case",
    "Floor",
    "KnownDisagreement",
    "LatencyPolicy",
    "ModelSpec",
    "StagedClassifier",
    "SyntheticRecipe",
    "TrainRecipe",
    "create_model",
    "get_spec",
    "list_backends",
    "list_models",
    "register_backend",
    "register_model",
]
