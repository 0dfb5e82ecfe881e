"""The matrix: one ``Case`` per model x backend x precision x input size x batch x device, and
what cannot run, as data."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from medgate.core.machine import missing_native_bf16
from medgate.core.precision import PRECISIONS
from medgate.core.registry import (
    UnknownNameError,
    get_backend,
    get_spec,
    list_backends,
    list_models,
)

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True, order=True)
class Case:
    model: str
    backend: str
    precision: str
    input_size: int
    batch: int
    device: str

    @property
    def id(self) -> str:
        return f"{self.model}-{self.key()}"

    def key(self, *, batch: bool = True, device: bool = True) -> str:
        """The case within its model's files: ``backend-precision-size[-bsN][-device]``. The
        accuracy gate's figures do not depend on the batch, and its floors and known exceptions
        match on what comes before the device."""
        parts = [self.backend, self.precision, str(self.input_size)]
        if batch:
            parts.append(f"bs{self.batch}")
        if device:
            parts.append(self.device)
        return "-".join(parts)

    @property
    def session_key(self) -> tuple[str, str, str, int, str]:
        """Cases that differ only in batch share one prepared backend session."""
        return (self.model, self.backend, self.precision, self.input_size, self.device)


def skip_reason(case: Case) -> str | None:
    """Why ``case`` cannot run here, or None: the backend's capability rows, the model's own
    (an architecture a tool rejects), then what this machine lacks."""
    declared = declared_reason(case)
    if declared is not None:
        return declared
    for rule in get_spec(case.model).unsupported:
        if rule.matches(case):
            return f"{case.model} on {case.backend}/{case.precision}: {rule.reason}"
    return machine_skip_reason(case)


def declared_reason(case: Case) -> str | None:
    """The backend's own capability rows: devices it runs on, combinations it cannot run."""
    backend = get_backend(case.backend)
    if case.device not in backend.devices:
        return f"{case.backend} does not run on {case.device}"
    for rule in backend.unsupported:
        if rule.matches(case):
            return f"{case.backend}/{case.precision}/{case.device}: {rule.reason}"
    return None


def machine_skip_reason(case: Case) -> str | None:
    """What this machine lacks for ``case``: a GPU, native bf16, an optional package."""
    backend = get_backend(case.backend)
    if case.device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if case.precision == "bf16" and case.device == "cpu":
        missing = missing_native_bf16()
        if missing is not None:
            return f"bf16 on this CPU: {missing}"
    return backend.unavailable_reason(case)


def capability_table(devices: tuple[str, ...] = DEVICES) -> list[tuple[str, str, str, str]]:
    """(backend, precision, device, "supported" or the reason) for every registered backend,
    from the backends' declared rows alone (not this machine's GPU or packages)."""
    rows = []
    for name in list_backends():
        for precision in PRECISIONS:
            for device in devices:
                declared = declared_reason(Case("*", name, precision, 0, 1, device))
                supported = "supported" if device == "cpu" else "supported (with a GPU)"
                rows.append((name, precision, device, declared or supported))
    return rows


@dataclass(frozen=True)
class MatrixSpec:
    """The axes to span, from options; see ``SuiteConfig``."""

    models: tuple[str, ...]
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    input_sizes: tuple[int | str, ...]
    devices: tuple[str, ...]


def select_models(patterns: tuple[str, ...]) -> list[str]:
    """Explicit patterns select from every registered model; none means the default matrix."""
    if patterns:
        return list_models(patterns)
    return [name for name in list_models() if get_spec(name).in_default_matrix]


def check_selection(spec: MatrixSpec) -> None:
    """Raise ``UnknownNameError`` for a model, backend or precision pattern matching nothing.

    A typo must not shrink the matrix silently: ``--models pneumonia_resnet`` selects nothing.
    """
    axes = (
        ("model", spec.models, list_models),
        ("backend", spec.backends, list_backends),
        ("precision", spec.precisions, lambda p: sorted(fnmatch.filter(PRECISIONS, p))),
    )
    for kind, patterns, matching in axes:
        for pattern in patterns:
            if not matching(pattern):
                if not any(ch in pattern for ch in "*?["):
                    # get_* raise with the close matches named.
                    {"model": get_spec, "backend": get_backend}.get(kind, _no_precision)(pattern)
                raise UnknownNameError(f"{kind} pattern {pattern!r} matches nothing registered")


def check_sizes(spec: MatrixSpec) -> None:
    """Raise ``UnknownNameError`` for a pixel size that no selected model declares."""
    models = select_models(spec.models)
    declared = sorted({size for model in models for size in get_spec(model).input_sizes})
    for size in spec.input_sizes:
        if isinstance(size, int) and size not in declared:
            raise UnknownNameError(
                f"input size {size} is not a size of any selected model "
                f"({', '.join(models)}); their sizes are {', '.join(map(str, declared))}"
            )


def check_model_paths(spec: MatrixSpec, option: str, given: Iterable[str]) -> None:
    """Raise ``UnknownNameError`` for a ``MODEL=PATH`` whose model is not selected (or is not
    the weights owner of a selected one): it would be ignored and the run would gate the
    bundled files instead."""
    models = select_models(spec.models)
    usable = set(models) | {get_spec(model).checkpoint_owner for model in models}
    for model in given:
        if model not in usable:
            raise UnknownNameError(
                f"{option} names model {model!r}, which this run does not select; selected: "
                f"{', '.join(sorted(usable))} (registered: {', '.join(list_models())})"
            )


def _no_precision(name: str) -> None:
    raise UnknownNameError(f"unknown precision {name!r} (registered: {', '.join(PRECISIONS)})")


def select_sizes(declared: tuple[int, ...], wanted: tuple[int | str, ...]) -> list[int]:
    chosen: set[int] = set()
    for item in wanted:
        if item == "all":
            chosen.update(declared)
        elif item == "largest":
            chosen.add(max(declared))
        elif item == "smallest":
            chosen.add(min(declared))
        elif isinstance(item, int) and item in declared:
            chosen.add(item)
    return sorted(chosen, reverse=True)


def build_cases(spec: MatrixSpec, batch: int = 1) -> list[Case]:
    """Every case the options span, at one batch size."""
    precisions = [p for p in PRECISIONS if any(fnmatch.fnmatchcase(p, w) for w in spec.precisions)]
    cases = []
    for model in select_models(spec.models):
        model_spec = get_spec(model)
        for size in select_sizes(model_spec.input_sizes, spec.input_sizes):
            for backend in list_backends(spec.backends):
                for precision in precisions:
                    for device in spec.devices:
                        cases.append(Case(model, backend, precision, size, batch, device))
    return cases
