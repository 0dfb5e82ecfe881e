"""ONNX Runtime's TensorRT execution provider (onnxruntime-gpu built with TensorRT).

fp16 is TensorRT's own reduced-precision build of the fp32 graph (``trt_fp16_enable``); int8 runs
the same calibrated QDQ graph as the ONNX Runtime backend, which TensorRT executes as explicit
int8. Engines are cached in the run's artifact directory, so building one (often tens of seconds)
happens in ``prepare``'s first session and never in the timed rounds.
"""

from __future__ import annotations

from typing import Any, ClassVar

from medgate.backends.base import BuildContext
from medgate.backends.onnxruntime import OnnxRuntimeBackend
from medgate.core.registry import Unsupported, register_backend


@register_backend
class TensorRTBackend(OnnxRuntimeBackend):
    name = "tensorrt"
    devices = frozenset({"cuda"})
    providers: ClassVar[dict[str, str]] = {"cuda": "TensorrtExecutionProvider"}
    unsupported = (
        Unsupported(precision="bf16", reason="the TensorRT provider offers fp32, fp16 and int8"),
        Unsupported(
            precision="int8-dynamic",
            reason="TensorRT has no dynamic quantization; int8 comes from the QDQ graph",
        ),
    )

    def execution_providers(self, context: BuildContext) -> list[Any]:
        precision = context.case.precision
        options = {
            "device_id": 0,
            "trt_fp16_enable": precision == "fp16",
            "trt_int8_enable": precision == "int8-static",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(context.artifact_dir / "tensorrt-engines"),
        }
        # CUDA then CPU take whatever TensorRT cannot (ORT partitions the graph).
        return [
            ("TensorrtExecutionProvider", options),
            ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0}),
            "CPUExecutionProvider",
        ]

    def graph_precision(self, precision: str) -> str:
        # TensorRT lowers fp16 itself from the fp32 graph.
        return "fp32" if precision == "fp16" else precision
