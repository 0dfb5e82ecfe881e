"""Built-in backends: every module of this package is imported, and each registers its own, so
adding a backend is adding a file here."""

import importlib
import pkgutil

from medgate.backends.base import Backend, BuildContext, Session

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Backend", "BuildContext", "Session"]
