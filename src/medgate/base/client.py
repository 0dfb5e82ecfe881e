"""One side's worker process, seen from the pytest process: start it, ask, stop it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medgate.core.steps import step

WORKER = Path(__file__).with_name("worker_main.py")


class WorkerError(RuntimeError):
    """A side's worker failed a request or died; the message names the side and the cause."""


@dataclasses.dataclass(frozen=True)
class SideSpec:
    """``name`` is ``head`` or ``base``; ``root`` the checkout whose engine and zoo it runs."""

    name: str
    root: Path
    label: str
    python: str = sys.executable


class Worker:
    def __init__(
        self,
        side: SideSpec,
        *,
        cache_dir: Path,
        threads: int,
        zoo: tuple[str, ...],
        calibration_samples: int,
        checkpoints: dict[str, Path],
        datasets: dict[str, Path],
        log_path: Path,
    ) -> None:
        self.side = side
        self.log_path = log_path
        command = [
            side.python,
            str(WORKER),
            "--root",
            str(side.root),
            "--cache-dir",
            str(cache_dir),
            "--threads",
            str(threads),
            "--calibration-samples",
            str(calibration_samples),
            "--zoo",
            *zoo,
        ]
        for flag, paths in (("--checkpoint", checkpoints), ("--dataset", datasets)):
            for model, path in paths.items():
                command += [flag, model, str(path)]
        env = dict(os.environ)
        # Idle OpenMP threads sleep instead of spinning: while one side is timed, the other
        # side's pool must not burn the cores it waits on.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["PYTHONPATH"] = ""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=side.root,
                env=env,
            )
        self.hello = self.ask({"op": "hello"})

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive(request)

    def send(self, request: dict[str, Any]) -> None:
        """Write ``request`` without waiting for the reply, so that two workers can work at
        once; ``receive`` reads it."""
        assert self.process.stdin is not None
        try:
            with step("base worker"):
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
        except BrokenPipeError:
            # The worker is gone: receive() reads no reply and reports how it exited.
            pass

    def receive(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to ``request``, sent before; raises ``WorkerError`` naming the side."""
        assert self.process.stdout is not None
        with step("base worker"):
            line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise WorkerError(
                f"the {self.side.name} worker ({self.side.label}) exited with status {code} "
                f"during {request['op']}; its log: {self.log_path}"
            )
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise WorkerError(
                f"the {self.side.name} worker ({self.side.label}) failed {request['op']}: "
                f"{reply['error']}\n{reply['traceback']}"
            )
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
