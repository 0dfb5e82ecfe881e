"""medgate: a pytest-benchmark performance-regression gate for medical-imaging classifiers."""

from medgate.core.matrix import Case
from medgate.core.policy import (
    AccuracyPolicy,
    AgreementPolicy,
    Floor,
    LatencyPolicy,
    LogitTolerance,
)
from medgate.core.registry import (
    KnownDisagreement,
    ModelSpec,
    Unsupported,
    create_model,
    get_spec,
    list_backends,
    list_models,
    register_backend,
    register_model,
)
from medgate.core.stages import StagedClassifier
from medgate.data import SyntheticRecipe
from medgate.training import TrainRecipe

__version__ = "0.1.0"

__all__ = [
    "AccuracyPolicy",
    "AgreementPolicy",
    "Case",
    "Floor",
    "KnownDisagreement",
    "LatencyPolicy",
    "LogitTolerance",
    "ModelSpec",
    "StagedClassifier",
    "SyntheticRecipe",
    "TrainRecipe",
    "Unsupported",
    "create_model",
    "get_spec",
    "list_backends",
    "list_models",
    "register_backend",
    "register_model",
]
