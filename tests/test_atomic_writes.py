"""Baseline files are written atomically: a writer killed at any moment leaves the old file or
the new one, whole, and the next write removes the temp file it left."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from medgate.data import atomic_write_bytes

#: Rewrites one baseline-sized JSON file as fast as it can, each version a valid document.
WRITER = """
import json, sys
from pathlib import Path
from medgate.data import atomic_write_bytes
path = Path(sys.argv[1])
version = 0
print("ready", flush=True)
while True:
    version += 1
    cases = {f"case-{i}": {"rounds_us": " ".join(["123.4"] * 2000)} for i in range(40)}
    atomic_write_bytes(path, json.dumps({"version": version, "cases": cases}).encode())
"""


def test_twenty_kills_at_random_moments_leave_a_whole_file_and_no_temp_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "baselines" / "model.json"
    atomic_write_bytes(path, json.dumps({"version": 0, "cases": {}}).encode())
    rng = random.Random(13)
    seen_versions = set()
    for _ in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.5))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        payload = json.loads(path.read_text())
        assert payload["version"] == 0 or len(payload["cases"]) == 40
        seen_versions.add(payload["version"])
        # What the killed writer left is removed by the next write, which also survives.
        atomic_write_bytes(path, path.read_bytes())
        assert [p.name for p in path.parent.iterdir()] == ["model.json"]
    assert len(seen_versions) > 1, "the writer never got to write: the test proved nothing"


def test_a_written_file_has_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    written = tmp_path / "written"
    atomic_write_bytes(written, b"x")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_temp_file_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    live = tmp_path / f".m.json.{os.getpid()}.abc.tmp"
    live.write_bytes(b"{}")
    atomic_write_bytes(path, b"{}")
    assert live.exists()
