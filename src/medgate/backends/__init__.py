"""Built-in backends; importing this package registers them."""

from medgate.backends import eager, onnxruntime, torchscript
from medgate.backends.base import Backend, BuildContext, Session

__all__ = ["Backend", "BuildContext", "Session", "eager", "onnxruntime", "torchscript"]
