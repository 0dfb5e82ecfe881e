"""The backend strategy: ``Backend.prepare(model, example, context) -> Session``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from medgate.core.matrix import Case
from medgate.core.precision import CALIBRATION, CalibrationRecipe
from medgate.core.registry import Unsupported


def no_calibration() -> Sequence[torch.Tensor]:
    raise RuntimeError("this build was given no calibration data")


@dataclass(frozen=True)
class BuildContext:
    """What a backend may use to build a session.

    ``artifact_dir`` is one directory per model, size and device, living for this run.
    ``cache_dir`` keeps derived graphs across runs under content keys (``onnx_artifacts``);
    None builds them in ``artifact_dir`` (a fresh session measures every step of the build).
    ``calibration`` returns preprocessed batches of the calibration split (built on first call).
    ``memo`` is shared by every build of the run: derived models (a quantized graph) are built
    once under ``artifact_key`` and reused by the latency, throughput and agreement sessions.
    """

    case: Case
    artifact_dir: Path
    threads: int
    weights_sha256: str = "unknown"
    calibration: Callable[[], Sequence[torch.Tensor]] = no_calibration
    calibration_recipe: CalibrationRecipe = CALIBRATION
    memo: dict[str, Any] = field(default_factory=dict)
    #: ``features`` or ``head`` when the build is one stage of the model, timed apart.
    stage: str = ""
    cache_dir: Path | None = None
    #: The session runs between another session's timed rounds (the reference workload): its
    #: threads must not keep spinning after a run. ONNX Runtime's spin-waiting pool beside the
    #: case's own pool doubled MobileNetV2's ORT rounds here (5.5 -> 12 ms, noise 2 -> 54 %).
    quiet: bool = False

    def artifact_key(self, kind: str) -> str:
        """Model + checkpoint + recipe: what a derived artifact depends on."""
        case = self.case
        recipe = self.calibration_recipe.key if "static" in kind else "none"
        model = f"{case.model}.{self.stage}" if self.stage else case.model
        return (
            f"{model}-{case.input_size}px-{case.device}-{kind}-{self.weights_sha256[:12]}-{recipe}"
        )


class Session(ABC):
    """A prepared model on one backend. ``run`` is what the timed rounds call."""

    #: Calls before timing; TorchScript's profiling executor needs several to specialize.
    warmup_calls: ClassVar[int] = 3

    def __init__(self, device: str, artifact: Path | None = None) -> None:
        self.device = device
        self.artifact = artifact
        #: Seconds ``Backend.prepare`` took (export, quantization, compile set-up); set by the
        #: workspace, reported in ``extra_info``.
        self.prepare_s: float | None = None
        #: Seconds spent compiling inside ``prepare`` (torch.compile), where there is such a step.
        self.compile_s: float | None = None

    def place(self, batch: torch.Tensor) -> Any:
        """Move a preprocessed CPU batch where ``run`` wants it (outside the timed region)."""
        return batch.to(self.device)

    @abstractmethod
    def run(self, placed: Any) -> torch.Tensor:
        """Logits for one placed batch."""

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def content_key(self) -> str | None:
        """What fixes this session's outputs for given inputs (the graph it runs, the runtime,
        its settings), so that its evaluations may be reused across runs; None where that
        cannot be stated (an eager module's forward() reads code no key could list)."""
        return None

    @property
    def artifact_bytes(self) -> int | None:
        """On-disk size of what this backend ships (exported graph), when it has one."""
        return self.artifact.stat().st_size if self.artifact is not None else None


class Backend(ABC):
    name: ClassVar[str]
    devices: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    #: The precision x device combinations this backend cannot run, with why: its rows of the
    #: capability table (``medgate capabilities`` prints the whole table).
    unsupported: ClassVar[tuple[Unsupported, ...]] = ()
    #: Why the memory lane has no ``session`` figure for this backend's builds, where a build's
    #: peak is not the model's; empty where it has one.
    no_session_figure: ClassVar[str] = ""

    def unavailable_reason(self, case: Case) -> str | None:
        """Why ``case`` cannot run on this machine (a missing optional dependency or provider)."""
        return None

    def preload(self, case: Case) -> None:
        """Import what ``prepare`` imports lazily for ``case``: the memory lane measures a build
        after this, so its figure is the build's allocations, not a module's first import
        (which whichever test came first would pay)."""
        return None

    @abstractmethod
    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        """Turn a trained eager fp32 module into a session for ``context.case``."""
