"""PyTorch eager: the reference every other backend is checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.backends.torch_precision import for_precision
from medgate.core.registry import Unsupported, register_backend

#: Rows every PyTorch backend shares; each adds its own.
TORCH_UNSUPPORTED = (
    Unsupported(
        precision="fp16",
        device="cpu",
        reason="fp16 needs CUDA (PyTorch's CPU fp16 convolutions are slow reference kernels)",
    ),
    Unsupported(
        precision="int8-dynamic",
        device="cuda",
        reason="torch.ao dynamic quantization has CPU (fbgemm/x86) kernels only",
    ),
    Unsupported(
        precision="int8-static",
        device="cuda",
        reason="PT2E's X86InductorQuantizer targets x86 CPUs",
    ),
)


class EagerSession(Session):
    def __init__(
        self,
        module: nn.Module,
        device: str,
        artifact: Path | None = None,
        input_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(device, artifact)
        self.module = module
        self.input_dtype = input_dtype

    def place(self, batch: torch.Tensor) -> Any:
        return batch.to(device=self.device, dtype=self.input_dtype)

    @torch.inference_mode()
    def run(self, placed: Any) -> torch.Tensor:
        output: torch.Tensor = self.module(placed)
        return output


@register_backend
class EagerBackend(Backend):
    name = "eager"
    unsupported = (
        *TORCH_UNSUPPORTED,
        Unsupported(
            precision="int8-static",
            reason="PT2E int8 becomes int8 kernels only when inductor compiles it; eager would "
            "time the fp32 q/dq reference graph (see the compile backend)",
        ),
    )

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        ready = for_precision(model, example, context)
        return EagerSession(ready.module, context.case.device, input_dtype=ready.input_dtype)
