"""Writing a run's report: ``results.json`` (atomically), the plots, ``report.md``, and the
markdown again into ``$GITHUB_STEP_SUMMARY`` when a GitHub Actions step runs the lane."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medgate.core.files import atomic_write_bytes
from medgate.results.markdown import render
from medgate.results.schema import validate


def write_report(document: Mapping[str, Any], directory: Path, results: bool = True) -> Path:
    """``directory``/report.md (and results.json unless ``results`` is False, when rebuilding
    from it); the plots under ``directory``/plots. The document is validated first, so a
    report is never written from a document its own schema refuses."""
    # matplotlib costs most of a second to import: only a run that writes a report pays it.
    from medgate.results.plots import draw_all

    validate(dict(document), str(directory / "results.json"))
    directory.mkdir(parents=True, exist_ok=True)
    if results:
        payload = json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n"
        atomic_write_bytes(directory / "results.json", payload.encode())
    markdown = render(document, draw_all(document, directory))
    atomic_write_bytes(directory / "report.md", markdown.encode())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        # A step summary shows no relative images; the artifact holds them.
        text = "\n".join(line for line in markdown.splitlines() if not line.startswith("!["))
        with Path(summary).open("a", encoding="utf-8") as stream:
            stream.write(text + "\n")
    return directory / "report.md"
