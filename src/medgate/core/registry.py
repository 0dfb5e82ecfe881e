"""The two registries: models (builder + frozen spec) and backends.

Registration is by decorator from the module that defines the thing, so adding a model or a
backend is one file; ``list_models`` / ``list_backends`` drive the matrix.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from medgate.core.policy import AccuracyPolicy, AgreementPolicy, LatencyPolicy

if TYPE_CHECKING:
    from torch import nn

    from medgate.backends.base import Backend
    from medgate.core.matrix import Case
    from medgate.data import SyntheticRecipe
    from medgate.training import TrainRecipe

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Unsupported:
    """A combination that cannot run; fields are globs, ``reason`` is shown on the skip."""

    reason: str
    backend: str = "*"
    precision: str = "*"
    device: str = "*"

    def matches(self, case: Case) -> bool:
        return (
            fnmatch.fnmatchcase(case.backend, self.backend)
            and fnmatch.fnmatchcase(case.precision, self.precision)
            and fnmatch.fnmatchcase(case.device, self.device)
        )


@dataclass(frozen=True)
class KnownDisagreement:
    """A reviewed exception: the cases matching ``cases`` (a glob over
    ``backend-precision-size``, e.g. ``onnxruntime-int8-static-*``) are expected to fail the
    ``gates`` named (``agreement`` with eager fp32's logits, ``accuracy`` against the fp32
    reference's metrics), for ``reason``. They run as strict xfails: still measured, and the
    build fails the day they start passing, so the exception is removed rather than forgotten.
    ``dataset`` (a glob over dataset names) limits it to the data it was measured on, and
    ``cpu_isa`` to CPUs with every one of those ISA extensions (e.g. ``("avx512_vnni",)`` for a
    disagreement that only the VNNI int8 kernels show): a case that disagrees only where a
    kernel exists is declared with that kernel, so it stays gated on every other CPU.
    ``cpu_lacks`` is the converse: CPUs with none of those extensions (a disagreement that the
    VNNI kernels do not show is declared ``cpu_lacks=("avx512_vnni", "avx_vnni")``, so the build
    does not fail on an XPASS where they run).
    ``device`` (``cpu``, ``cuda`` or ``*``) limits it likewise to the device it was measured on.
    ``stored_baseline`` marks a disagreement with the stored baseline rather than with the
    in-run fp32 reference (a baseline recorded on another CPU's kernels): against the base
    revision, which replaces the stored baseline and runs on this CPU, it does not apply."""

    cases: str
    reason: str
    gates: tuple[str, ...] = ("agreement",)
    dataset: str = "*"
    cpu_isa: tuple[str, ...] = ()
    cpu_lacks: tuple[str, ...] = ()
    device: str = "*"
    stored_baseline: bool = False

    def matches(
        self,
        backend: str,
        precision: str,
        size: int,
        dataset: str = "*",
        cpu_flags: frozenset[str] = frozenset(),
        device: str = "cpu",
        against_base: bool = False,
    ) -> bool:
        return (
            fnmatch.fnmatchcase(f"{backend}-{precision}-{size}", self.cases)
            and fnmatch.fnmatchcase(device, self.device)
            and fnmatch.fnmatchcase(dataset, self.dataset)
            and all(flag in cpu_flags for flag in self.cpu_isa)
            and not any(flag in cpu_flags for flag in self.cpu_lacks)
            and not (self.stored_baseline and against_base)
        )


@dataclass(frozen=True)
class ModelSpec:
    """What the gate needs to know about a model besides its architecture.

    ``in_chans`` is what the network takes: grayscale data is replicated to 3 channels for
    ImageNet-style backbones and fed as 1 channel to the custom CNNs.
    """

    name: str
    task: str
    classes: tuple[str, ...]
    positive_class: str
    input_sizes: tuple[int, ...]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: SyntheticRecipe
    train: TrainRecipe
    smoke_size: int | None = None
    in_default_matrix: bool = True
    weights_from: str | None = None
    notes: str = ""
    #: Backend x precision x device combinations this model cannot run, with why (e.g. a
    #: quantizer that rejects its architecture); added to the backends' own rows.
    unsupported: tuple[Unsupported, ...] = ()
    known_disagreements: tuple[KnownDisagreement, ...] = ()
    #: Tolerated metric drops and absolute floors of the accuracy gate.
    accuracy: AccuracyPolicy = field(default_factory=AccuracyPolicy)
    #: Tolerated slowdown against the latency baseline, per model or per case.
    latency: LatencyPolicy = field(default_factory=LatencyPolicy)
    #: Reviewed widenings of a precision's max |delta logit| against eager fp32, per case.
    agreement: AgreementPolicy = field(default_factory=AgreementPolicy)

    def __post_init__(self) -> None:
        if self.positive_class not in self.classes:
            raise ValueError(
                f"model {self.name!r}: positive_class {self.positive_class!r} is not one of "
                f"its classes {self.classes}"
            )
        if not self.input_sizes:
            raise ValueError(f"model {self.name!r}: input_sizes must name at least one size")
        if self.smoke_size is not None and self.smoke_size not in self.input_sizes:
            raise ValueError(
                f"model {self.name!r}: smoke_size {self.smoke_size} is not one of its "
                f"input_sizes {self.input_sizes}"
            )
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(
                f"model {self.name!r}: mean/std need one value per input channel "
                f"(in_chans={self.in_chans})"
            )
        if len(self.dataset.classes) != len(self.classes):
            raise ValueError(
                f"model {self.name!r}: its dataset {self.dataset.name!r} has "
                f"{len(self.dataset.classes)} classes, the model {len(self.classes)}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class)

    @property
    def default_smoke_size(self) -> int:
        return self.smoke_size if self.smoke_size is not None else min(self.input_sizes)

    @property
    def checkpoint_owner(self) -> str:
        """The model whose trained weights this one loads (itself unless ``weights_from``)."""
        return self.weights_from or self.name


ModelBuilder = Callable[[], "nn.Module"]


@dataclass(frozen=True)
class RegisteredModel:
    spec: ModelSpec
    builder: ModelBuilder
    #: The module whose code called ``register_model`` (a conftest may register a spec around
    #: a builder of another module).
    registered_in: str


@dataclass
class Registry(Generic[T]):
    kind: str
    entries: dict[str, T] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, entry: T, origin: str) -> None:
        # Re-importing the same definition (pytester, importlib.reload) replaces it; a second,
        # different definition under one name is a mistake worth stopping for.
        if name in self.entries and self.origins[name] != origin:
            raise ValueError(
                f"{self.kind} {name!r} is already registered by {self.origins[name]}; "
                f"{origin} registers it again: rename one of them"
            )
        self.entries[name] = entry
        self.origins[name] = origin

    def get(self, name: str) -> T:
        try:
            return self.entries[name]
        except KeyError:
            prefixed = [known for known in sorted(self.entries) if known.startswith(name)]
            close = prefixed[:3] or difflib.get_close_matches(name, self.entries, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self.entries)) or "none"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (registered: {known})"
            ) from None

    def names(self, patterns: Iterable[str] = ("*",)) -> list[str]:
        wanted = list(patterns)
        return sorted(n for n in self.entries if any(fnmatch.fnmatchcase(n, p) for p in wanted))


_MODELS: Registry[RegisteredModel] = Registry("model")
_BACKENDS: Registry[Backend] = Registry("backend")


def _origin(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def register_model(spec: ModelSpec) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder`` (no arguments, returns an untrained module) under ``spec.name``."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        caller = sys._getframe(1).f_globals.get("__name__", "?")
        _MODELS.add(spec.name, RegisteredModel(spec, builder, caller), _origin(builder))
        return builder

    return decorate


def create_model(name: str) -> nn.Module:
    """Build the (untrained) architecture of a registered model."""
    return _MODELS.get(name).builder()


def get_spec(name: str) -> ModelSpec:
    return _MODELS.get(name).spec


def registered_in(name: str) -> str:
    """The module whose code registered ``name``."""
    return _MODELS.get(name).registered_in


def model_module(name: str) -> str:
    """The module that registered ``name``: importing it registers the model in a new process."""
    return str(_MODELS.get(name).builder.__module__)


def list_models(pattern: str | Iterable[str] = "*") -> list[str]:
    """Registered model names matching a glob (or any of several globs), sorted."""
    return _MODELS.names([pattern] if isinstance(pattern, str) else pattern)


BackendClass = TypeVar("BackendClass", bound="type[Backend]")


def register_backend(cls: BackendClass) -> BackendClass:
    """Class decorator: register one instance of a ``Backend`` subclass under ``cls.name``."""
    _BACKENDS.add(cls.name, cls(), _origin(cls))
    return cls


def get_backend(name: str) -> Backend:
    return _BACKENDS.get(name)


def list_backends(pattern: str | Iterable[str] = "*") -> list[str]:
    return _BACKENDS.names([pattern] if isinstance(pattern, str) else pattern)
