"""Files medgate writes and reviewers read: atomic writes, hashes, and how a baseline file is
parsed, refused and shown. Imports no torch, so a writer process starts in a blink."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file, the field and the fix."""


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(f"holds {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"holds {text}, which overflows to {value}")
    return value


def rerecord_hint(lane: str) -> str:
    return f"`pytest perf_tests -m {lane} --update-baselines`"


def load_json(path: Path, lane: str) -> Any:
    """The parsed file, None when there is none; ``BaselineError`` when it is not JSON."""
    if not path.exists():
        return None
    try:
        # NaN compares false with everything and infinity passes every "> 0": a figure that
        # could never fire is refused at the parse, in every field of every lane's file.
        payload = json.loads(
            path.read_text(), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except _NonFinite as error:
        raise BaselineError(
            f"{path}: {error}, not a finite number; no figure of a baseline may be NaN or "
            f"infinite: restore it from git or delete it and re-record with {rerecord_hint(lane)}"
        ) from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(
            f"{path}: not readable JSON ({error}); restore it from git or delete it and "
            f"re-record with {rerecord_hint(lane)}"
        ) from error
    if not isinstance(payload, dict):
        # A file that holds `null` is not "no baseline yet": the run would gate nothing.
        raise BaselineError(
            f"{path}: (top level): expected an object, found {json.dumps(payload)[:40]}; "
            f"restore it from git or delete it and re-record with {rerecord_hint(lane)}"
        )
    return payload


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the project root where it lies inside it, as a reviewer reads it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once: os.umask can only be read by setting it.
_UMASK = _umask()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Temp files of ``path`` left by a writer that was killed (their pid is dead)."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        pid = orphan.name.removeprefix(f".{path.name}.").split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            orphan.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` so that readers see the old file or the whole new one, never a part.

    The temp file names its writer's pid, so the next write removes what a killed writer left;
    the file gets the mode a plain ``open()`` would give it (mkstemp's is 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
