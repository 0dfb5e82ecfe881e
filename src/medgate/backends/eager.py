"""PyTorch eager: the reference every other backend is checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.registry import register_backend


class EagerSession(Session):
    def __init__(self, module: nn.Module, device: str, artifact: Path | None = None) -> None:
        super().__init__(device, artifact)
        self.module = module

    @torch.inference_mode()
    def run(self, placed: Any) -> torch.Tensor:
        output: torch.Tensor = self.module(placed)
        return output


@register_backend
class EagerBackend(Backend):
    name = "eager"

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        return EagerSession(model.to(context.case.device).eval(), context.case.device)
