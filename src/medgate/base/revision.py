"""The base revision on disk: a checkout path as given, or a git ref exported once into the
cache (``git archive``, unpacked beside and renamed into place, so a killed run never leaves a
half-written base that a later run would trust)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path


class BaseRevisionError(ValueError):
    """The base cannot be materialized; the message names the option and the fix."""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)


def resolve(ref: str, root: Path) -> str:
    """The commit ``ref`` names in the repository at ``root``."""
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise BaseRevisionError(
            f"--medgate-base={ref}: git cannot resolve it to a commit in {root} "
            f"({found.stderr.decode().strip() or 'unknown revision'}); give a branch, tag or "
            "commit of this repository (fetch it first in a shallow clone), or the path of a "
            "checkout"
        )
    return found.stdout.decode().strip()


def materialize(ref: str, root: Path, cache_dir: Path) -> tuple[Path, str]:
    """The base's checkout directory and how the run header names it."""
    given = Path(ref).expanduser()
    if given.is_dir():
        return given.resolve(), f"checkout {given.resolve()}"
    commit = resolve(ref, root)
    target = cache_dir / "base" / commit
    if not target.is_dir():
        archive = _git(root, "archive", "--format=tar", commit)
        if archive.returncode != 0:
            raise BaseRevisionError(
                f"--medgate-base={ref}: git archive {commit[:12]} failed: "
                f"{archive.stderr.decode().strip()}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}.", dir=target.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(staging, filter="data")
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
    return target, f"{ref} = {commit[:12]}"


def merge_base(root: Path, upstream: str) -> str | None:
    """The commit where HEAD left ``upstream``, or None without git history to find it."""
    found = _git(root, "merge-base", "HEAD", upstream)
    return found.stdout.decode().strip() or None if found.returncode == 0 else None
