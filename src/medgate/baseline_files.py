"""What every reviewed baseline file shares: where it is shown from, how it is read, the error."""

from __future__ import annotations

import json
import math
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
