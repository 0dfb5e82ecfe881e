"""Built-in backends; importing this package registers them."""

from medgate.backends import compiled, eager, onnxruntime, tensorrt, torchscript
from medgate.backends.base import Backend, BuildContext, Session

__all__ = [
    "Backend",
    "BuildContext",
    "Session",
    "compiled",
    "eager",
    "onnxruntime",
    "tensorrt",
    "torchscript",
]
