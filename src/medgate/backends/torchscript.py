"""TorchScript: ``torch.jit.trace`` + ``torch.jit.freeze``, as the Alzheimer seed shipped it."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from medgate.backends.base import Backend, BuildContext, Session
from medgate.backends.eager import TORCH_UNSUPPORTED, EagerSession
from medgate.backends.torch_precision import for_precision
from medgate.core.registry import Unsupported, register_backend


class TorchScriptSession(EagerSession):
    # The profiling executor specializes after a few calls; fewer warm-ups left the first
    # timed rounds ~5x slow on this machine.
    warmup_calls = 10


@register_backend
class TorchScriptBackend(Backend):
    name = "torchscript"
    unsupported = (
        *TORCH_UNSUPPORTED,
        Unsupported(
            precision="int8-static",
            reason="TorchScript has no maintained static int8 path in torch 2.14 (eager-mode and "
            "FX quantization are deprecated); see compile and onnxruntime",
        ),
    )

    def prepare(self, model: nn.Module, example: torch.Tensor, context: BuildContext) -> Session:
        device = context.case.device
        ready = for_precision(model, example, context)
        artifact = context.artifact_dir / f"torchscript-{context.case.precision}.pt"
        artifact.parent.mkdir(parents=True, exist_ok=True)
        # torch 2.14 deprecates TorchScript; teams still ship it, so the gate still measures it.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(
                ready.module, example.to(device=device, dtype=ready.input_dtype), check_trace=False
            )
            frozen = torch.jit.freeze(traced)
            torch.jit.save(frozen, str(artifact))
        return TorchScriptSession(frozen, device, artifact, input_dtype=ready.input_dtype)
