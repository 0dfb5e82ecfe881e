"""``python -m medgate.train_worker REQUEST.json``: one training run on the pinned kernels.

Started by ``medgate.training.train_pinned`` with the pin's environment, in a process of its own
because the ISA switches are read once, when torch and MKL load. Progress goes to stderr.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgate.core.files import atomic_write_bytes
from medgate.core.kernels import PINS, pinned
from medgate.core.machine import cpu
from medgate.core.registry import get_spec
from medgate.data import Dataset, Split
from medgate.training import checkpoint_key, train


def _dataset(request: dict[str, Any]) -> Dataset:
    with np.load(request["data"]) as arrays:
        names = sorted({key.rsplit("_", 1)[0] for key in arrays.files})
        splits = {name: Split(arrays[f"{name}_images"], arrays[f"{name}_labels"]) for name in names}
    return Dataset(Path(request["dataset_source"]), request["dataset_sha256"], splits)


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    sys.path[:] = request["sys_path"]
    importlib.import_module(request["module"])
    spec = get_spec(request["model"])
    dataset = _dataset(request)
    pin = PINS[request["pin"]]
    key = checkpoint_key(spec, dataset, pin)
    if key != request["key"]:
        raise SystemExit(
            f"medgate: model {spec.name!r} as registered by {request['module']} has checkpoint "
            f"key {key}, the caller asked for {request['key']}: register the spec you train "
            "rather than changing it in place"
        )
    # torch warns, on entering its oneDNN switch, about TF32 on Intel GPUs this process lacks.
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    with pinned(pin, os.environ):
        checkpoint = train(spec, dataset)
    checkpoint.meta.update(
        dataset_sha256=dataset.sha256,
        dataset_source=str(dataset.source),
        kernels=pin.key(),
        trained_on=cpu().describe(),
    )
    buffer = io.BytesIO()
    torch.save(checkpoint.payload(), buffer)
    atomic_write_bytes(Path(request["out"]), buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
