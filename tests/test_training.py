from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tiny_zoo
from medgate.core.files import sha256_file
from medgate.core.kernels import AVX2, BASELINE, KernelPin, PinError, pin_for, pinned
from medgate.core.machine import Cpu, cpu
from medgate.data import load_dataset
from medgate.training import (
    CheckpointError,
    checkpoint_sha256,
    ensure_checkpoint,
    load_trained,
    read_checkpoint,
    weights_sha256,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tiny_zoo.RECIPE.materialize(tmp_path_factory.mktemp("data"))
    return load_dataset(path, num_classes=2)


def test_training_is_deterministic_and_cached(dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = ensure_checkpoint(tiny_zoo.SPEC, dataset, tmp_path / "a")
    second = ensure_checkpoint(tiny_zoo.SPEC, dataset, tmp_path / "b")
    assert first.trained_now
    assert second.trained_now
    checkpoint_a, checkpoint_b = read_checkpoint(first.path), read_checkpoint(second.path)
    weights_a, weights_b = checkpoint_a.state_dict, checkpoint_b.state_dict
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert checkpoint_a.sha256 == checkpoint_b.sha256
    assert checkpoint_a.meta["test_accuracy"] > 0.7  # it learned something
    again = ensure_checkpoint(tiny_zoo.SPEC, dataset, tmp_path / "a")
    assert not again.trained_now
    assert again.path == first.path


def test_a_users_bare_state_dict_loads(tmp_path: Path) -> None:
    model = tiny_zoo.tiny_cnn()
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    loaded = load_trained(tiny_zoo.SPEC, path)
    assert not loaded.training


def test_a_pickled_module_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(tiny_zoo.tiny_cnn(), path)
    with pytest.raises(CheckpointError, match=r"module\.pt: cannot be loaded .*save a state_dict"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: does not fit model 'tiny_cnn'"):
        load_trained(tiny_zoo.SPEC, path)


def test_a_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"absent\.pt: checkpoint not found"):
        read_checkpoint(tmp_path / "absent.pt")


#: Trains tiny_cnn through the pinned path in a fresh interpreter and prints its tensor hash.
TRAIN_AND_HASH = """
import sys
from pathlib import Path
import tiny_zoo
from medgate.data import load_dataset
from medgate.training import checkpoint_sha256, ensure_checkpoint
cache = Path(sys.argv[1])
dataset = load_dataset(tiny_zoo.RECIPE.materialize(cache), num_classes=2)
print(checkpoint_sha256(ensure_checkpoint(tiny_zoo.SPEC, dataset, cache).path))
"""

#: The same recipe trained in-process, on whatever kernels this interpreter's ISA selects.
TRAIN_UNPINNED_AND_HASH = """
import sys
from pathlib import Path
import tiny_zoo
from medgate.data import load_dataset
from medgate.training import train
dataset = load_dataset(tiny_zoo.RECIPE.materialize(Path(sys.argv[1])), num_classes=2)
print(train(tiny_zoo.SPEC, dataset).sha256)
"""

#: Two machines as far apart as one CPU can emulate: ATen's plain C++ kernels, oneDNN capped at
#: SSE4.1 and MKL on its SSE2 branch, on one core; and the AVX2 kernels on every core.
NATIVE_ISAS = (
    ({"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}, 1),
    ({"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}, None),
)


def _hash_in_subprocess(script: str, cache: Path, isa: dict[str, str], cores: int | None) -> str:
    def restrict() -> None:
        if cores is not None:
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])

    result = subprocess.run(
        [sys.executable, "-c", script, str(cache)],
        env={**os.environ, **isa, "PYTHONPATH": os.pathsep.join(sys.path)},
        preexec_fn=restrict,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()[-1]


needs_avx2 = pytest.mark.skipif(
    not cpu().has("avx2", "fma"), reason="needs a CPU with AVX2 and FMA to run two native ISAs"
)


@needs_avx2
def test_the_native_isa_moves_unpinned_training(tmp_path: Path) -> None:
    """Why training is pinned: left to the ISA it finds, the same recipe trains other weights."""
    hashes = {
        _hash_in_subprocess(TRAIN_UNPINNED_AND_HASH, tmp_path, isa, cores)
        for isa, cores in NATIVE_ISAS
    }
    assert len(hashes) == 2


@needs_avx2
def test_pinned_training_gives_the_same_tensors_under_any_native_isa_and_core_count(
    tmp_path: Path,
) -> None:
    hashes = [
        _hash_in_subprocess(TRAIN_AND_HASH, tmp_path / f"cache{index}", isa, cores)
        for index, (isa, cores) in enumerate(NATIVE_ISAS)
    ]
    assert hashes[0] == hashes[1]


def test_a_checkpoint_is_identified_by_its_tensors_not_its_bytes(tmp_path: Path) -> None:
    weights = tiny_zoo.tiny_cnn().state_dict()
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"state_dict": weights, "meta": {"saved": 1}}, first)
    torch.save({"state_dict": weights, "meta": {"saved": 2}}, second)
    assert sha256_file(first) != sha256_file(second)
    assert checkpoint_sha256(first) == checkpoint_sha256(second)
    changed = {**weights, "head.bias": weights["head.bias"] + 1e-7}
    assert weights_sha256(changed) != weights_sha256(weights)


def test_a_worker_not_started_on_its_pin_refuses_to_train() -> None:
    here = torch.backends.cpu.get_cpu_capability().lower()
    elsewhere = KernelPin("other", aten_capability=f"not-{here}", mkl_branch="AVX2")
    with pytest.raises(PinError, match=r"not the pinned not-"), pinned(elsewhere, {}):
        pass


def test_the_pin_follows_the_cpu() -> None:
    zen1 = Cpu("AuthenticAMD", "AMD EPYC", 0x17, 1, 2, frozenset({"avx2", "fma"}))
    old = Cpu("GenuineIntel", "Old Xeon", 6, 0x2D, 7, frozenset({"avx", "sse4_2"}))
    assert pin_for(zen1) is AVX2
    assert pin_for(old) is BASELINE
    assert AVX2.key() != BASELINE.key()
