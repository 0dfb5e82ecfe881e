"""How the PyTorch backends (eager, TorchScript, torch.compile) realize each precision.

One strategy per precision, each turning the trained fp32 module into what that precision runs:

- ``fp32``: the module itself, in IEEE fp32 on CUDA too (``strict_fp32``): cuDNN convolutions
  default to TF32, whose 10-bit mantissa would make "fp32" on a GPU a lower precision than
  the eager fp32 reference it is held to.
- ``fp16`` / ``bf16``: weights cast to the dtype, inputs cast at ``place`` (not autocast: one
  strategy that TorchScript can trace as well as eager and compile run it).
- ``int8-dynamic``: ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear``, the recipe
  the Alzheimer seed shipped. On these CNNs that is the classifier head only; the convolutions
  stay fp32, which is exactly what a team gets from that one-liner.
- ``int8-static``: PT2E with torchao's ``X86InductorQuantizer`` (export, insert observers,
  calibrate on the calibration split, convert). Its q/dq graph becomes int8 kernels only when
  inductor compiles it, so only the compile backend offers it.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from medgate.backends.base import BuildContext


def strict_fp32() -> None:
    """Run fp32 matmuls and convolutions in IEEE fp32 on every device, never TF32.

    The flags are process-wide, so the suite sets them once at start-up, through the
    ``allow_tf32`` switches: inductor still reads those, and torch refuses to answer them once
    any flag was set through the newer per-operator ``fp32_precision`` settings."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


@dataclass(frozen=True)
class TorchModel:
    """A module ready for a precision, and the dtype its inputs must have."""

    module: nn.Module
    input_dtype: torch.dtype


def _cast(dtype: torch.dtype) -> Callable[[nn.Module, torch.Tensor, BuildContext], TorchModel]:
    def strategy(model: nn.Module, example: torch.Tensor, context: BuildContext) -> TorchModel:
        return TorchModel(model.to(device=context.case.device, dtype=dtype).eval(), dtype)

    return strategy


def dynamic_int8(model: nn.Module, example: torch.Tensor, context: BuildContext) -> TorchModel:
    # torch.ao warns that it will move to torchao; the call is still what teams ship.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            model.cpu().eval(), {nn.Linear}, dtype=torch.qint8
        )
    return TorchModel(quantized, torch.float32)


def static_int8_pt2e(model: nn.Module, example: torch.Tensor, context: BuildContext) -> TorchModel:
    """Built once per model, size and checkpoint; every session of the run reuses it."""
    key = context.artifact_key("pt2e-x86-int8-static")
    if key not in context.memo:
        context.memo[key] = _quantize_pt2e(model, example, context)
    return TorchModel(context.memo[key], torch.float32)


def _quantize_pt2e(model: nn.Module, example: torch.Tensor, context: BuildContext) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    # An example of batch 1 would specialize the batch axis to 1; two images keep it symbolic,
    # so the latency, throughput and agreement batches share one quantized graph.
    pair = example.expand(2, *example.shape[1:]).contiguous().cpu()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(
            copy.deepcopy(model).cpu().eval(), (pair,), dynamic_shapes=({0: batch},)
        ).module()
        quantizer = x86.X86InductorQuantizer()
        quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for images in tqdm(
                context.calibration(),
                desc=f"calibrating {context.case.model}@{context.case.input_size} (PT2E int8)",
                unit="batch",
                file=sys.stderr,
                leave=False,
            ):
                prepared(images)
        converted: nn.Module = convert_pt2e(prepared)
    return converted


TORCH_PRECISIONS: dict[str, Callable[[nn.Module, torch.Tensor, BuildContext], TorchModel]] = {
    "fp32": _cast(torch.float32),
    "fp16": _cast(torch.float16),
    "bf16": _cast(torch.bfloat16),
    "int8-dynamic": dynamic_int8,
    "int8-static": static_int8_pt2e,
}


def for_precision(model: nn.Module, example: torch.Tensor, context: BuildContext) -> TorchModel:
    return TORCH_PRECISIONS[context.case.precision](model, example, context)
