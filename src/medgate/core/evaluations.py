"""Logits of unchanged sessions on unchanged inputs, kept across runs.

An accuracy evaluation runs every test image through the session: most of the accuracy lane's
time, and the same figures again when neither the graph nor the images changed. A session that
can state what fixes its outputs (``Session.content_key``: an ONNX Runtime CPU session's graph
bytes, runtime and threads) has its logits stored under a key of that, the SHA-256 of the very
input tensors it was fed, and the machine; a rerun with the same key reads them back, and the
gates judge them as if just computed. Anything else is evaluated every run.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from medgate.core.files import atomic_write_bytes


def evaluation_key(content_key: str, inputs_sha256: str, machine: str) -> str:
    text = f"{content_key}|{inputs_sha256}|{machine}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class EvaluationCache:
    """``<cache>/evaluations/<key>.npy``: float32 logits, one row per test image."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self, key: str, rows: int) -> np.ndarray | None:
        path = self.directory / f"{key}.npy"
        try:
            logits: np.ndarray = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None
        if logits.ndim != 2 or logits.shape[0] != rows or logits.dtype != np.float32:
            return None
        return logits

    def store(self, key: str, logits: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(logits, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self.directory / f"{key}.npy", buffer.getvalue())
