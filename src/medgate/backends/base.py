"""The backend strategy: ``Backend.prepare(model, example, context) -> Session``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from medgate.matrix import Case


@dataclass(frozen=True)
class BuildContext:
    """What a backend may use to build a session: the case, a directory for its artifacts
    (one per model, size and device, living for this run) and the thread budget."""

    case: Case
    artifact_dir: Path
    threads: int


class Session(ABC):
    """A prepared model on one backend. ``run`` is what the timed rounds call."""

    #: Calls before timing; TorchScript's profiling executor needs several to specialize.
    warmup_calls: ClassVar[int] = 3

    def __init__(self, device: str, artifact: Path | None = None) -> None:
        self.device = device
        self.artifact = artifact

    def place(self, batch: torch.Tensor) -> Any:
        """Move a preprocessed CPU batch where ``run`` wants it (outside the timed region)."""
        return batch.to(self.device)

    @abstractmethod
    def run(self, placed: Any) -> torch.Tensor:
        """Logits for one placed batch."""

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    @property
    def artifact_bytes(self) -> int | None:
        """On-disk size of what this backend ships (exported graph), when it has one."""
        return self.artifact.stat().st_size if self.artifact is not None else None


class Backend(ABC):
    name: ClassVar[str]
    devices: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})

    def unavailable_reason(self, device: str) -> str | None:
        """Why this backend cannot run on ``device`` here (a missing optional dependency)."""
        return None

    @abstractmethod
    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        """Turn a trained eager fp32 module into a session for ``context.case``."""
