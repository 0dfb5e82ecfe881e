"""Baseline files are written atomically: a writer killed at any moment leaves the old file or
the new one, whole, and the next write removes the temp file it left."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import medgate.core.files
from medgate.core.files import atomic_write_bytes
from medgate.gates.accuracy.store import read_baseline
from medgate.gates.latency.store import read_latency_baseline
from medgate.gates.memory.store import read_memory_baseline

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Rewrites one baseline-sized JSON file as fast as it can, each version a valid document. It
#: loads ``core/files.py`` by its path (the module imports only the standard library), not
#: through the medgate package, whose ``__init__`` imports torch: the writer starts in
#: milliseconds, so the kills land in its writes rather than in its imports.
WRITER = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("files", sys.argv[2])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
atomic_write_bytes = files.atomic_write_bytes
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
            [sys.executable, "-c", WRITER, str(path), medgate.core.files.__file__],
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


def _tiny_suite(root: Path) -> None:
    root.mkdir()
    for module in ("tiny_zoo.py", "tiny_data.py"):
        shutil.copy(HERE / module, root / module)
    for name in ("test_latency.py", "test_accuracy.py", "test_memory.py"):
        shutil.copy(ROOT / "perf_tests" / name, root / name)
    (root / "tox.ini").write_text(
        "[pytest]\npythonpath = .\nmedgate_zoo = tiny_zoo\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
    )


def _update(root: Path, cache: Path, backend: str) -> subprocess.Popen[str]:
    """A real `--update-baselines` run of every lane on one backend's cases."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"--cache-dir={cache}",
        "--benchmark-max-time=0.005",
        "--benchmark-min-rounds=3",
        "--device=cpu",
        "--input-sizes=16",
        "--precisions=fp32",
        f"--backends={backend}",
        # Stages and throughput record the same kind of rounds as the latency test; left out,
        # a run is shorter.
        "-k",
        "not stages and not throughput",
        "--update-baselines",
        "--medgate-report=off",
        "-q",
    ]
    # A killed run cannot remove its temporary files: they go under the test's own directory.
    scratch = root / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(scratch)}
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _lane_files(baselines: Path) -> list[Path]:
    return sorted(baselines.glob("*/tiny_cnn.json")) + sorted(baselines.glob("*/*/tiny_cnn.json"))


def _temp_files(baselines: Path) -> set[str]:
    return {
        entry.name
        for directory in {path.parent for path in _lane_files(baselines)}
        for entry in os.scandir(directory)
        if entry.name.endswith(".tmp")
    }


def _stored_cases(baselines: Path) -> dict[str, set[str]]:
    """Every lane's file read by medgate's own readers (each must parse) and its case keys."""
    accuracy = read_baseline(baselines / "accuracy" / "tiny_cnn.json", 2)
    memory = read_memory_baseline(baselines / "memory" / "tiny_cnn.json")
    (latency_file,) = (baselines / "latency").glob("*/tiny_cnn.json")
    latency = read_latency_baseline(latency_file)
    assert accuracy is not None
    assert memory is not None
    assert latency is not None
    return {
        "accuracy": set(accuracy.sections["tiny_squares"].cases),
        "memory": set(memory.cases),
        "latency": set(latency.measurements),
    }


def _run_until(run: subprocess.Popen[str], baselines: Path, deadline: float | None) -> float | None:
    """Busy-wait until a new temp file appears (``deadline`` None) or the deadline passes;
    returns when the temp file was seen (``time.time()``), None otherwise."""
    existing = _temp_files(baselines)
    while run.poll() is None:
        if deadline is None and _temp_files(baselines) - existing:
            return time.time()
        if deadline is not None and time.monotonic() >= deadline:
            return None
        # A write takes milliseconds (it fsyncs); polling without a pause would take a core
        # from the run it watches.
        time.sleep(0.0002)
    return None


@dataclass
class KillLoop:
    """Kills of `--update-baselines` runs in one project, and what they left."""

    root: Path
    cache: Path
    seed: int
    inside_write: int = 0
    part_done: int = 0

    @property
    def baselines(self) -> Path:
        return self.root / "baselines"

    def seed_files(self) -> tuple[dict[str, set[str]], float, float]:
        """Record both backends' cases; returns them, a complete run's seconds and how long its
        write of the lanes' files took."""
        _tiny_suite(self.root)
        _update(self.root, self.cache, "eager").wait(timeout=300)
        started = time.monotonic()
        seeded = _update(self.root, self.cache, "onnxruntime")
        write_began = _run_until(seeded, self.baselines, None)
        assert seeded.wait(timeout=300) == 0, seeded.stderr.read() if seeded.stderr else ""
        assert write_began is not None, "the complete run was not seen writing a baseline"
        run_seconds = time.monotonic() - started
        last_write = max(path.stat().st_mtime for path in _lane_files(self.baselines))
        recorded = _stored_cases(self.baselines)
        assert all(len(cases) >= 2 for cases in recorded.values()), recorded
        return recorded, run_seconds, last_write - write_began

    def run(self, kills: int) -> None:
        recorded, run_seconds, write_seconds = self.seed_files()
        rng = random.Random(self.seed)
        for kill in range(kills):
            before = {path: path.stat().st_mtime_ns for path in _lane_files(self.baselines)}
            leftovers = _temp_files(self.baselines)
            run = _update(self.root, self.cache, rng.choice(["eager", "onnxruntime"]))
            if kill % 4 == 0:
                deadline = time.monotonic() + rng.uniform(0.3, 1.0) * run_seconds
                _run_until(run, self.baselines, deadline)
            elif _run_until(run, self.baselines, None) is not None:
                time.sleep(rng.uniform(0.0, max(write_seconds, 0.001)))
                self.inside_write += 1
            run.send_signal(signal.SIGKILL)
            run.wait()
            rewritten = sum(path.stat().st_mtime_ns != before[path] for path in before)
            if 0 < rewritten < len(before) or _temp_files(self.baselines) - leftovers:
                self.part_done += 1
            stored = _stored_cases(self.baselines)
            for lane, cases in recorded.items():
                lost = cases - stored[lane]
                assert not lost, f"{self.root.name}: kill {kill} lost {lane} cases {lost}"
        final = _update(self.root, self.cache, "eager")
        assert final.wait(timeout=300) == 0
        assert _temp_files(self.baselines) == set()
        for lane, cases in recorded.items():
            assert cases <= _stored_cases(self.baselines)[lane]


def test_eight_kills_of_update_baselines_runs_lose_no_case_and_leave_no_temp_file(
    tmp_path: Path, medgate_cache: Path
) -> None:
    """kill -9 of real `pytest perf_tests --update-baselines` runs, most of them inside the
    session-end write of the lanes' files (a random delay after its first temp file appears,
    within how long that write took in a complete run), the rest at a random moment of the run.
    After each, every lane's file parses and holds every case recorded before; a complete run
    afterwards removes whatever temp file the killed ones left."""
    loop = KillLoop(tmp_path / "project", medgate_cache, seed=29)
    loop.run(kills=8)
    print(f"8 kills: {loop.inside_write} inside the write, {loop.part_done} left it part-done")
    # How many polls catch a write depends on how fast this disk syncs; one is the proof.
    assert loop.inside_write >= 1, "no kill reached the write: the loop proved little"
