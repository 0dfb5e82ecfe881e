"""``python -m medgate.base.pick``: the ``--medgate-base`` argument for the pre-merge lane, or
nothing (stored baselines), with the reason on stderr.

The base is ``$MEDGATE_BASE`` when set (empty: stored baselines), else the merge base of HEAD
and the upstream (``$MEDGATE_UPSTREAM``, else ``origin/HEAD``, ``origin/main``, ``main``). A
clean tree at the upstream itself has nothing to compare, and a clone without the history has
no merge base: both fall back to the stored baselines, and say so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medgate.base.revision import merge_base

UPSTREAMS = ("origin/HEAD", "origin/main", "main")


def _git(root: Path, *args: str) -> str | None:
    found = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def pick(root: Path) -> tuple[str | None, str]:
    """The base ref and why, or None and why the stored baselines are used."""
    given = os.environ.get("MEDGATE_BASE")
    if given is not None:
        if not given:
            return None, "MEDGATE_BASE is empty: gating against the stored baselines"
        return given, f"MEDGATE_BASE={given}"
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return None, "not a git checkout: gating against the stored baselines"
    upstreams = [os.environ["MEDGATE_UPSTREAM"]] if "MEDGATE_UPSTREAM" in os.environ else UPSTREAMS
    for upstream in upstreams:
        base = merge_base(root, upstream)
        if base is None:
            continue
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        if base == head and not dirty:
            return None, (
                f"HEAD is {upstream} itself and the tree is clean: no change to compare; "
                "gating against the stored baselines"
            )
        return base, f"the merge base of HEAD and {upstream}"
    return None, (
        f"no merge base with {' or '.join(upstreams)} (a shallow clone, or no upstream): gating "
        "against the stored baselines; fetch the upstream or set MEDGATE_BASE"
    )


def main() -> None:
    base, why = pick(Path.cwd())
    print(f"medgate: base revision: {base or 'none'} ({why})", file=sys.stderr)
    if base is not None:
        print(f"--medgate-base={base}")


if __name__ == "__main__":
    main()
