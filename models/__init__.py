"""The zoo: importing this package imports every module in it, and each registers itself.

Adding a model is adding one file here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
