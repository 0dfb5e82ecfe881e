"""A worker process serving one side (head or base) of a paired run.

Run as a script by ``medgate.base.client`` with the side's checkout first on ``sys.path``, so
``import medgate`` and the zoo resolve to that side's own engine, models, preprocessing and data
recipes, while this file — the harness: the timing loop and the protocol — is the head's, as
asv times every commit with the head's benchmarks. It speaks JSON lines on stdin/stdout
(stdout is kept for the protocol; everything else the side prints goes to stderr).

The side's engine is reached through what it has exposed since its layout settled
(``SuiteConfig``, ``MatrixSpec``, ``CalibrationRecipe``, ``Workspace``, ``Case``); a base older
than that is refused with a message naming the fix.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

PROTOCOL = 1


def _put_side_first(root: Path) -> None:
    src = root / "src"
    if (src / "medgate").is_dir():
        sys.path.insert(0, str(src))
    sys.path.insert(0, str(root))


def _tree_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def model_code_files(module: str) -> list[Path]:
    """``module``'s file and every module of its own top package it imports, transitively: a
    model's code is its file and the zoo helpers it uses, not its siblings."""
    import ast

    package = module.split(".")[0]
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        loaded = sys.modules.get(name) or importlib.import_module(name)
        file = getattr(loaded, "__file__", None)
        if file is None:
            continue
        seen[name] = Path(file)
        tree = ast.parse(Path(file).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            pending += [n for n in names if n.split(".")[0] == package and n in sys.modules]
    return [seen[name] for name in sorted(seen)]


def model_code_sha256(module: str) -> str:
    """The SHA-256 of ``model_code_files(module)``, in order: a model's code as one hash."""
    return hashlib.sha256(b"".join(f.read_bytes() for f in model_code_files(module))).hexdigest()


def _settle(limit_s: float = 1.0) -> float:
    """Wait until this process's threads stop using CPU (ONNX Runtime's intra-op pool spins
    for a while after a run): the other side's next block must not share the cores with them.
    Returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        before = time.process_time()
        time.sleep(0.005)
        if time.process_time() - before < 0.0005:
            break
    return time.perf_counter() - started


class Side:
    def __init__(self, args: argparse.Namespace) -> None:
        _put_side_first(Path(args.root))
        import torch

        torch.set_num_threads(args.threads)
        try:
            from medgate.core.config import SuiteConfig
            from medgate.core.matrix import Case, MatrixSpec
            from medgate.core.precision import CalibrationRecipe
            from medgate.workspace import Workspace
        except ImportError as error:
            raise SystemExit(
                f"medgate worker: the checkout at {args.root} has no medgate engine this harness "
                f"can drive ({error}); compare against a newer base, or run without "
                "--medgate-base (stored baselines)"
            ) from error
        import medgate
        import medgate.backends

        try:
            from medgate.backends.torch_precision import strict_fp32

            strict_fp32()
        except ImportError:
            pass
        for module in args.zoo:
            importlib.import_module(module)
        self.zoo = tuple(args.zoo)
        self.Case = Case
        self.engine_dir = Path(medgate.__file__).parent
        self.root = Path(args.root)
        self.workspace = Workspace(
            SuiteConfig(
                matrix=MatrixSpec((), ("*",), ("*",), ("all",), ("cpu",)),
                throughput_batch=16,
                threads=args.threads,
                agreement_samples=64,
                accuracy_batch=64,
                calibration=CalibrationRecipe(samples=args.calibration_samples),
                cache_dir=Path(args.cache_dir),
                baseline_dir=self.root / "baselines",
                root=self.root,
                checkpoints={m: Path(p) for m, p in args.checkpoint},
                datasets={m: Path(p) for m, p in args.dataset},
            ),
            stream=sys.stderr,
        )
        self.placed: dict[Any, Any] = {}

    def case(self, raw: dict[str, Any]) -> Any:
        return self.Case(**raw)

    def hello(self, _: dict[str, Any]) -> dict[str, Any]:
        from medgate.core.machine import library_versions

        return {
            "protocol": PROTOCOL,
            "engine": str(self.engine_dir),
            "versions": library_versions(),
            "python": sys.version.split()[0],
            "pid": os.getpid(),
        }

    def identity(self, request: dict[str, Any]) -> dict[str, Any]:
        """What every measurement of ``model`` depends on, each as a hash."""
        from medgate.core.registry import get_spec, model_module
        from medgate.training import checkpoint_key

        model = request["model"]
        workspace = self.workspace
        module = model_module(model)
        files = model_code_files(module)
        owner = get_spec(model).checkpoint_owner
        given = workspace.config.checkpoints.get(model) or workspace.config.checkpoints.get(owner)
        if given is not None:
            from medgate.training import checkpoint_sha256

            weights = f"given {checkpoint_sha256(given)}"
        else:
            weights = f"recipe {checkpoint_key(get_spec(owner), workspace.dataset(owner))}"
        return {
            "engine": self._engine_sha256(),
            "model_code": model_code_sha256(module),
            "model_files": [str(f.relative_to(self.root)) for f in files],
            "weights": weights,
            "dataset": workspace.dataset(model).sha256,
            "versions": self.hello({})["versions"],
        }

    def _engine_sha256(self) -> str:
        """The medgate package, and the zoo entries that register no model themselves (a
        backend, a package's ``__init__``): code every case of the side runs through."""
        from medgate.core.registry import list_models, model_module

        models = {model_module(name) for name in list_models()}
        digest = hashlib.sha256(_tree_sha256(self.engine_dir).encode())
        for module in sorted(set(self.zoo) - models):
            file = getattr(sys.modules[module], "__file__", None)
            if file is not None:
                digest.update(module.encode() + b"\0" + Path(file).read_bytes())
        return digest.hexdigest()

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        """Build the case's session and warm it up; the weights are trained if missing."""
        case = self.case(request["case"])
        workspace = self.workspace
        session = workspace.session(case)
        placed = session.place(workspace.inputs(case.model, case.input_size, case.batch))
        for _ in range(max(1, session.warmup_calls)):
            session.run(placed)
        session.synchronize()
        self.placed[case] = placed
        # The other side may be timed next, on the cores this warm-up's threads spin on.
        _settle()
        return {"prepare_s": session.prepare_s, "artifact_bytes": session.artifact_bytes}

    def time(self, request: dict[str, Any]) -> dict[str, Any]:
        """``rounds`` timed calls of the prepared session, with this process's CPU time."""
        case = self.case(request["case"])
        session = self.workspace.session(case)
        placed = self.placed[case]
        clock = time.perf_counter
        seconds = []
        gc.disable()
        try:
            cpu_started, wall_started = time.process_time(), clock()
            for _ in range(int(request["rounds"])):
                started = clock()
                session.run(placed)
                session.synchronize()
                seconds.append(clock() - started)
            cpu_s, wall_s = time.process_time() - cpu_started, clock() - wall_started
        finally:
            gc.enable()
        settle_s = _settle()
        return {
            "seconds": seconds,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "settle_s": settle_s,
            # The block and the settling after it: the window the client reads /proc/stat over.
            "request_cpu_s": time.process_time() - cpu_started,
        }

    def evaluate(self, request: dict[str, Any]) -> dict[str, Any]:
        """The case's per-image outcome on this side's test split."""
        case = self.case(request["case"])
        workspace = self.workspace
        if (case.backend, case.precision, case.device) == ("eager", "fp32", "cpu"):
            import torch

            model = workspace.trained_model(case.model, case.input_size)
            with torch.inference_mode():
                evaluation = workspace.evaluate(case, model)
        else:
            session = workspace.session(case)
            evaluation = workspace.evaluate(case, lambda b: session.run(session.place(b)))
        return evaluation.to_record(workspace.dataset(case.model).sha256)

    def memory(self, request: dict[str, Any]) -> dict[str, Any]:
        """memray's peak of one batch through the prepared, warmed session (all threads),
        traced as the pytest process traces its figures (Python's objects, not its arenas)."""
        import tempfile

        from memray import FileReader, Tracker

        case = self.case(request["case"])
        session = self.workspace.session(case)
        placed = self.placed[case]
        with tempfile.TemporaryDirectory(prefix="medgate-worker-memray-") as directory:
            capture = Path(directory) / "batch.bin"
            with Tracker(capture, trace_python_allocators=True):
                session.run(placed)
                session.synchronize()
            records = FileReader(capture).get_high_watermark_allocation_records(merge_threads=True)
            return {"peak_bytes": sum(record.size for record in records)}


def serve(side: Side, incoming: Any, outgoing: Any) -> None:
    for line in incoming:
        request = json.loads(line)
        op = request.get("op")
        if op == "quit":
            break
        try:
            reply = {"ok": True, **getattr(side, op)(request)}
        except Exception as error:
            reply = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        outgoing.write(json.dumps(reply) + "\n")
        outgoing.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--zoo", nargs="*", default=[])
    parser.add_argument("--checkpoint", nargs=2, action="append", default=[])
    parser.add_argument("--dataset", nargs=2, action="append", default=[])
    args = parser.parse_args()
    protocol = sys.stdout
    # The side's prints (training progress, warnings) must not corrupt the protocol.
    sys.stdout = sys.stderr
    side = Side(args)
    serve(side, sys.stdin, protocol)


if __name__ == "__main__":
    main()
