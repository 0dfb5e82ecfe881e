from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import tiny_zoo  # noqa: F401  (registers tiny_cnn for the in-process tests)

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

RunSuite = Callable[..., pytest.RunResult]

#: A conftest for a pytester run that fakes an AVX2-only x86-64 (no AVX-512, no native bf16)
#: without a GPU, so a test that counts cases counts the same on every machine: on one with
#: native bf16 or CUDA those cases would run instead of skipping. It keeps avx2 and fma, which
#: training's kernel pin reads.
AVX2_ONLY_CPU = """
import torch

import medgate.core.machine

torch.cuda.is_available = lambda: False

_FAKE = medgate.core.machine.Cpu(
    vendor="GenuineIntel",
    brand="Fake AVX2-only CPU",
    family=6,
    model=0x3F,
    stepping=2,
    flags=frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"}),
)
medgate.core.machine.cpu = lambda: _FAKE
"""


@pytest.fixture(scope="session")
def medgate_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for every run of the session, so the tiny model trains once."""
    return tmp_path_factory.mktemp("medgate-cache")


@pytest.fixture
def suite_dir(pytester: pytest.Pytester) -> Path:
    """A project with the tiny zoo and medgate's real perf_tests files."""
    pytester.makeini(
        "[pytest]\n"
        "pythonpath = .\n"
        "medgate_zoo = tiny_zoo\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
    )
    for module in ("tiny_zoo.py", "tiny_data.py"):
        shutil.copy(HERE / module, pytester.path / module)
    for test_file in ("test_latency.py", "test_agreement.py", "test_accuracy.py", "test_memory.py"):
        shutil.copy(ROOT / "perf_tests" / test_file, pytester.path / test_file)
    return pytester.path


@pytest.fixture
def run_suite(pytester: pytest.Pytester, suite_dir: Path, medgate_cache: Path) -> RunSuite:
    """Run the copied suite in a subprocess (a fresh registry and torch state each time)."""

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            f"--cache-dir={medgate_cache}",
            "--benchmark-max-time=0.02",
            "--benchmark-min-rounds=5",
            # The report costs seconds per run (its plots): written by the runs that check it,
            # which pass their own --medgate-report (the last one wins); its peak GEMMs at a
            # size that takes milliseconds.
            "--medgate-report=off",
            "--medgate-peak-size=256",
            "-p",
            "no:randomly",
            *args,
        )

    return run
