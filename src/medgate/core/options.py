"""Every option and ini key medgate adds to pytest, and the argparse ``type=`` functions that
parse them. Each option has an ini key of the same name prefixed ``medgate_``; the command line
wins; a typo is a usage error before anything runs."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import pytest

from medgate.core.machine import usable_cores
from medgate.core.matrix import DEVICES

SIZE_KEYWORDS = ("all", "largest", "smallest")


def comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def input_sizes(value: str) -> tuple[int | str, ...]:
    parsed: list[int | str] = []
    for item in comma_list(value):
        if item in SIZE_KEYWORDS:
            parsed.append(item)
        elif item.isdigit() and int(item) > 0:
            parsed.append(int(item))
        else:
            raise argparse.ArgumentTypeError(
                f"input size {item!r}: give pixel sizes or {'/'.join(SIZE_KEYWORDS)}, "
                "e.g. --input-sizes=224,192 or --input-sizes=largest"
            )
    return tuple(parsed) or ("all",)


def devices(value: str) -> tuple[str, ...]:
    if value == "all":
        return DEVICES
    if value not in DEVICES:
        raise argparse.ArgumentTypeError(
            f"device {value!r}: choose one of {', '.join(DEVICES)} or all"
        )
    return (value,)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number


def percentage(value: str) -> float:
    """``10`` or ``10%`` -> 0.10."""
    try:
        number = float(value.strip().removesuffix("%"))
    except ValueError:
        number = -1.0
    # NaN compares false with everything, so "number < 0" alone would let it through.
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a finite percentage >= 0, e.g. 10 for +10 %"
        )
    return number / 100


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number > 0")
    return number


def non_negative_int(value: str) -> int:
    if value.strip() == "0":
        return 0
    return positive_int(value)


def seed(value: str) -> int | None:
    """A whole number, or empty / ``random`` for a new seed each run."""
    if value.strip() in ("", "random"):
        return None
    return non_negative_int(value)


def normalize_mode(value: str) -> str:
    if value not in ("auto", "always"):
        raise argparse.ArgumentTypeError(
            f"{value!r}: 'auto' (normalize across machines or when the machine drifted) or 'always'"
        )
    return value


def model_paths(values: list[str] | str) -> Mapping[str, Path]:
    """``MODEL=PATH`` pairs, from a repeated option or an ini line list."""
    pairs: dict[str, Path] = {}
    for item in [values] if isinstance(values, str) else values:
        model, sep, path = item.partition("=")
        if not sep or not model.strip() or not path.strip():
            raise argparse.ArgumentTypeError(
                f"{item!r}: write MODEL=PATH, e.g. pneumonia_resnet18=data/pneumonia.npz"
            )
        pairs[model.strip()] = Path(path.strip()).expanduser()
    return MappingProxyType(pairs)


def model_path(value: str) -> str:
    model_paths(value)
    return value


def thread_count(value: str) -> int:
    """0 means every core this process may use."""
    if value.strip() == "0":
        return usable_cores()
    return positive_int(value)


def identical_mode(value: str) -> str:
    if value not in ("skip", "measure"):
        raise argparse.ArgumentTypeError(f"{value!r}: expected skip or measure")
    return value


def default_cache_dir() -> Path:
    if os.environ.get("MEDGATE_CACHE_DIR"):
        return Path(os.environ["MEDGATE_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "medgate"


@dataclass(frozen=True)
class Option:
    flag: str
    parse: Callable[[str], Any]
    default: str
    help: str
    repeated: bool = False

    @property
    def dest(self) -> str:
        name = self.flag.removeprefix("--").replace("-", "_")
        return name if name.startswith("medgate_") else f"medgate_{name}"


OPTIONS = (
    Option("--models", comma_list, "", "model globs, comma-separated (default: the default zoo)"),
    Option("--backends", comma_list, "*", "backend globs, comma-separated"),
    Option("--precisions", comma_list, "*", "precision globs, comma-separated"),
    Option("--input-sizes", input_sizes, "all", "sizes: pixels, all, largest or smallest"),
    Option("--device", devices, "all", "cpu, cuda or all (CUDA cases skip without a GPU)"),
    Option("--throughput-batch", positive_int, "16", "batch size of the throughput tests"),
    Option("--threads", thread_count, "0", "torch and ORT intra-op threads (0: all cores)"),
    Option("--agreement-samples", positive_int, "64", "test images for the agreement check"),
    Option("--accuracy-batch", positive_int, "64", "batch size of the accuracy evaluation"),
    Option(
        "--calibration-samples",
        positive_int,
        "128",
        "val-split images that calibrate static int8 scales",
    ),
    Option(
        "--memory-headroom",
        percentage,
        "10",
        "percent added to a measured memory figure to make its ceiling (--update-baselines)",
    ),
    Option(
        "--latency-tolerance",
        percentage,
        "10",
        "percent a case may be slower than its latency baseline (a model's spec may override)",
    ),
    Option(
        "--latency-remeasures",
        non_negative_int,
        "2",
        "times an unsure latency case is measured again, each with as many rounds as it has",
    ),
    Option(
        "--latency-normalize",
        normalize_mode,
        "auto",
        "compare case/reference-workload ratios: auto (other machine, or drifted) or always",
    ),
    Option(
        "--latency-baseline-machine",
        str,
        "",
        "fingerprint id whose latency baselines to compare with (normalized) on a machine "
        "that has none",
    ),
    Option(
        "--latency-seed",
        seed,
        "",
        "seed of the order sessions run in within a model (default: a new one each run)",
    ),
    Option(
        "--medgate-base",
        str,
        "",
        "git ref, or path of a checkout, of the base revision: every case is compared with it, "
        "measured side by side in this run (docs/base.md)",
    ),
    Option(
        "--medgate-base-python",
        str,
        "",
        "Python interpreter of the base side, for a base that needs other dependencies",
    ),
    Option(
        "--medgate-base-identical",
        identical_mode,
        "skip",
        "skip: a case whose inputs hash the same on both sides is reported identical to base, "
        "not measured; measure: measure it anyway (an A/A check of the machine)",
    ),
    Option(
        "--medgate-base-tolerance",
        percentage,
        "5",
        "percent slower than the base a case may get, judged on paired blocks",
    ),
    Option(
        "--medgate-base-pairs",
        positive_int,
        "16",
        "pairs of blocks a verdict is planned on: the first look comes after half of them, "
        "an unsure case gets a quarter as many more at a time, up to three times as many",
    ),
    Option(
        "--medgate-base-block-ms",
        positive_int,
        "100",
        "milliseconds of rounds in one block of a pair",
    ),
    Option(
        "--medgate-report",
        str,
        "medgate-report",
        "directory of the run's results.json, report.md and plots (relative to the rootdir); "
        "'off' writes none",
    ),
    Option(
        "--medgate-shard",
        str,
        "",
        "name of this run when it is one shard of several (default: the models it ran); "
        "`medgate report` merges shards",
    ),
    Option(
        "--medgate-peak-size",
        positive_int,
        "2048",
        "side of the square GEMMs that measure the machine's peak per dtype (roofline)",
    ),
    Option(
        "--medgate-watts-per-thread",
        positive_float,
        "5",
        "watts one busy thread is assumed to draw where no RAPL counter measures it (energy)",
    ),
    Option("--baseline-dir", str, "baselines", "committed baselines (accuracy/, memory/)"),
    Option("--cache-dir", str, "", "trained checkpoints, datasets, exports ($MEDGATE_CACHE_DIR)"),
    Option("--checkpoint", model_path, "", "MODEL=PATH: use your checkpoint", repeated=True),
    Option("--dataset", model_path, "", "MODEL=PATH: your .npz or ImageFolder", repeated=True),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("medgate", "medgate performance-regression gate")
    for option in OPTIONS:
        kind: Literal["linelist", "string"] = "linelist" if option.repeated else "string"
        if option.repeated:
            group.addoption(
                option.flag,
                action="append",
                dest=option.dest,
                type=option.parse,
                default=None,
                help=option.help,
            )
        else:
            group.addoption(
                option.flag, dest=option.dest, type=option.parse, default=None, help=option.help
            )
        parser.addini(option.dest, option.help, type=kind, default=None)
    group.addoption(
        "--update-baselines",
        action="store_true",
        dest="medgate_update_baselines",
        default=False,
        help="record this run's figures as the baselines under --baseline-dir (atomic writes; "
        "review the diff) instead of comparing with them",
    )
    parser.addini(
        "medgate_zoo", "modules that register models (imported at start-up)", type="linelist"
    )


def option_value(config: pytest.Config, option: Option) -> Any:
    given = config.getoption(option.dest)
    if given is not None:
        return given
    raw = config.getini(option.dest)
    if raw is None or raw == [] or raw == "":
        raw = [] if option.repeated else option.default
    try:
        if option.repeated:
            return list(raw)
        return option.parse(raw)
    except argparse.ArgumentTypeError as error:
        raise pytest.UsageError(f"ini key {option.dest} = {raw!r}: {error}") from error
