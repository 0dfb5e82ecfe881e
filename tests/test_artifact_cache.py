"""Derived graphs (fp16, int8) are kept across runs under a key of everything they depend on: an
unchanged rerun reuses them; a change to the model's forward(), to what it reads besides its
code, or to the calibration tensors builds a fresh one."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from conftest import RunSuite
from medgate.backends.base import BuildContext
from medgate.backends.onnx_artifacts import derived_key, export_onnx, onnx_artifact, prune_cache
from medgate.core.matrix import Case

pytest.importorskip("onnxruntime")

CASE = (
    "-m",
    "latency",
    "--backends=onnxruntime",
    "--precisions=int8-dynamic",
    "--input-sizes=16",
    "--device=cpu",
    "-k",
    "not stages and not throughput",
)


def _graphs(cache: Path) -> dict[str, int]:
    """Cached int8 graphs by name, with the inode: a graph written again has another one."""
    return {
        path.name: path.stat().st_ino
        for path in (cache / "graphs").glob("tiny_cnn-*-int8-dynamic-*.onnx")
    }


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_a_rerun_reuses_the_graph_and_a_changed_forward_builds_a_fresh_one(
    suite_dir: Path, run_suite: RunSuite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    run_suite(*CASE, f"--cache-dir={cache}").assert_outcomes(passed=1)
    first = _graphs(cache)
    assert len(first) == 1

    run_suite(*CASE, f"--cache-dir={cache}").assert_outcomes(passed=1)
    assert _graphs(cache) == first  # the same file, not written again

    # What forward() reads besides its code (here an environment variable) changes the graph
    # without changing a file: the export is redone each run, so its bytes tell.
    monkeypatch.setenv("MEDGATE_TINY_WORK", "3")
    run_suite(*CASE, f"--cache-dir={cache}").assert_outcomes(passed=1)
    monkeypatch.delenv("MEDGATE_TINY_WORK")
    (repeated,) = set(_graphs(cache)) - set(first)
    convs = [
        n for n in onnx.load(str(cache / "graphs" / repeated)).graph.node if "Conv" in n.op_type
    ]
    assert len(convs) == 4  # the first convolution and the middle one three times
    first = _graphs(cache)

    zoo = suite_dir / "tiny_zoo.py"
    source = zoo.read_text()
    changed = source.replace("* 0.5 + x * 0.5", "* 0.5 + torch.sigmoid(x) * 0.5")
    assert changed != source
    zoo.write_text(changed)
    run_suite(*CASE, f"--cache-dir={cache}").assert_outcomes(passed=1)
    graphs = _graphs(cache)
    (fresh,) = set(graphs) - set(first)
    assert "Sigmoid" in _ops(cache / "graphs" / fresh)
    assert all("Sigmoid" not in _ops(cache / "graphs" / old) for old in first)


def _context(tmp_path: Path, calibration: tuple[torch.Tensor, ...]) -> BuildContext:
    case = Case("tiny", "onnxruntime", "int8-static", 8, 1, "cpu")
    return BuildContext(
        case,
        tmp_path / "run",
        threads=1,
        weights_sha256="0" * 64,
        calibration=lambda: calibration,
        cache_dir=tmp_path / "graphs",
    )


def test_the_key_follows_the_graph_bytes_and_the_calibration_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()).eval()
    example = torch.randn(1, 1, 8, 8)
    images = (torch.randn(4, 1, 8, 8),)
    graph = export_onnx(model, example, tmp_path / "a.onnx")
    again = export_onnx(model, example, tmp_path / "b.onnx")
    assert graph.read_bytes() == again.read_bytes()  # the export is deterministic

    key = derived_key(graph, _context(tmp_path, images), "int8-static")
    assert derived_key(again, _context(tmp_path, images), "int8-static") == key
    other_images = (images[0] + 1,)
    assert derived_key(graph, _context(tmp_path, other_images), "int8-static") != key
    assert derived_key(graph, _context(tmp_path, images), "int8-dynamic") != key
    with torch.no_grad():
        model[0].bias += 1
    changed = export_onnx(model, example, tmp_path / "c.onnx")
    assert derived_key(changed, _context(tmp_path, images), "int8-static") != key


def test_a_static_graph_is_built_once_and_stale_graphs_are_pruned(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()).eval()
    example = torch.randn(1, 1, 8, 8)
    images = (torch.randn(4, 1, 8, 8),)
    built = onnx_artifact(model, example, _context(tmp_path, images), "int8-static")
    assert built.parent == tmp_path / "graphs"
    inode = built.stat().st_ino
    os.utime(built, (0, 0))
    fresh = dataclasses.replace(_context(tmp_path, images), memo={})
    assert onnx_artifact(model, example, fresh, "int8-static") == built
    assert built.stat().st_ino == inode  # reused, not written again
    assert built.stat().st_mtime > 0  # and marked used

    stale = tmp_path / "graphs" / "old-graph.onnx"
    stale.write_bytes(b"")
    os.utime(stale, (0, 0))
    assert prune_cache(tmp_path / "graphs") == [stale]
    assert built.exists()


def test_inductor_s_cache_is_kept_beside_medgate_s(
    suite_dir: Path, run_suite: RunSuite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inductor's FX-graph cache (keyed by the traced graph, so never stale) goes to the medgate
    cache, where a warm rerun finds it, not to /tmp; a directory the user set is kept."""
    (suite_dir / "test_where.py").write_text(
        "import os\n\ndef test_where():\n"
        "    print('inductor cache:', os.environ['TORCHINDUCTOR_CACHE_DIR'])\n"
    )
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cache = tmp_path / "cache"
    ours = run_suite("test_where.py", "-s", f"--cache-dir={cache}")
    ours.stdout.fnmatch_lines([f"*inductor cache: {cache / 'inductor'}"])
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    theirs = run_suite("test_where.py", "-s", f"--cache-dir={cache}")
    theirs.stdout.fnmatch_lines([f"*inductor cache: {tmp_path / 'mine'}"])


def _accuracy_of(backends: str, cache: Path) -> tuple[str, ...]:
    """The arguments of an fp32 accuracy run of ``backends`` at 16 px with its own cache."""
    return (
        "-m",
        "accuracy",
        f"--backends={backends}",
        "--precisions=fp32",
        "--input-sizes=16",
        f"--cache-dir={cache}",
    )


def test_an_unchanged_ort_graph_s_evaluation_is_read_back_and_a_changed_one_is_run(
    suite_dir: Path, run_suite: RunSuite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    accuracy = _accuracy_of("eager,onnxruntime", cache)
    first = run_suite(*accuracy)
    assert first.parseoutcomes()["passed"] == 2
    assert "read back" not in first.stdout.str()
    # The ONNX Runtime graph's, and eager's under its replay key.
    assert len(list((cache / "evaluations").glob("*.npy"))) == 2

    again = run_suite(*accuracy)
    assert again.parseoutcomes()["passed"] == 2
    again.stdout.fnmatch_lines(["*1 accuracy evaluation(s) read back*onnxruntime-fp32-16*"])

    # Another graph (the environment variable its forward() reads): evaluated, stored beside;
    # eager's replay key is the same, and its logits are replaced.
    monkeypatch.setenv("MEDGATE_TINY_WORK", "3")
    changed = run_suite(*accuracy)
    assert "read back" not in changed.stdout.str()
    assert len(list((cache / "evaluations").glob("*.npy"))) == 3

    # A file that does not hold this split's logits is not trusted: evaluated again.
    monkeypatch.delenv("MEDGATE_TINY_WORK")
    for stored in (cache / "evaluations").glob("*.npy"):
        stored.write_bytes(b"not an array")
    rerun = run_suite(*accuracy)
    assert rerun.parseoutcomes()["passed"] == 2
    assert "read back" not in rerun.stdout.str()
    assert "evaluation(s) replayed" not in rerun.stdout.str()


def test_a_torch_session_s_evaluation_is_replayed_only_where_its_first_batch_matches(
    suite_dir: Path, run_suite: RunSuite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An eager or TorchScript session states no content key (its forward() is code): its first
    test batch is run every time, and the other batches are read back only where that batch's
    logits equal an earlier run's to the bit under the same model code, weights and inputs."""
    accuracy = _accuracy_of("eager,torchscript", tmp_path / "cache")
    first = run_suite(*accuracy)
    assert first.parseoutcomes()["passed"] == 2
    assert "evaluation(s) replayed" not in first.stdout.str()

    again = run_suite(*accuracy)
    assert again.parseoutcomes()["passed"] == 2
    again.stdout.fnmatch_lines(["*2 accuracy evaluation(s) replayed*"])

    # Other logits on the first batch (what forward() computes, not its code, changed).
    monkeypatch.setenv("MEDGATE_TINY_WORK", "3")
    changed = run_suite(*accuracy)
    assert changed.parseoutcomes()["passed"] == 2
    assert "evaluation(s) replayed" not in changed.stdout.str()

    # The same logits as that run, but the model's code changed: the key did.
    (suite_dir / "tiny_zoo.py").write_text((suite_dir / "tiny_zoo.py").read_text() + "# edit\n")
    edited = run_suite(*accuracy)
    assert edited.parseoutcomes()["passed"] == 2
    assert "evaluation(s) replayed" not in edited.stdout.str()
    run_suite(*accuracy).stdout.fnmatch_lines(["*2 accuracy evaluation(s) replayed*"])
