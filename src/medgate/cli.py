"""``medgate train`` and ``medgate list``: the recipe and the zoo outside pytest."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tabulate import tabulate

import medgate.backends  # noqa: F401  (registers the built-in backends)
from medgate.core.matrix import (
    Case,
    MatrixSpec,
    capability_table,
    check_selection,
    machine_skip_reason,
    select_models,
)
from medgate.core.options import comma_list, default_cache_dir, model_paths, thread_count
from medgate.core.registry import UnknownNameError, get_spec, list_backends
from medgate.data import DatasetError, load_dataset
from medgate.report import render
from medgate.results.markdown import headline
from medgate.results.merge import merge
from medgate.results.schema import load as load_results
from medgate.results.write import write_report
from medgate.training import (
    CheckpointError,
    TrainingError,
    checkpoint_sha256,
    ensure_checkpoint,
    load_trained,
    split_accuracy,
)


def _import_zoo(modules: Sequence[str]) -> None:
    sys.path.insert(0, str(Path.cwd()))
    for module in modules:
        importlib.import_module(module)


def _train(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    datasets = model_paths(args.dataset or [])
    rows = []
    check_selection(MatrixSpec(args.models, ("*",), ("*",), ("all",), ("cpu",)))
    for name in select_models(args.models):
        spec = get_spec(name)
        if spec.weights_from is not None:
            print(f"medgate: {name} uses the weights of {spec.weights_from}", file=sys.stderr)
            continue
        source = datasets.get(name) or spec.dataset.materialize(args.cache_dir)
        dataset = load_dataset(source, spec.num_classes, spec.classes)
        started = time.perf_counter()
        result = ensure_checkpoint(spec, dataset, args.cache_dir)
        seconds = time.perf_counter() - started
        accuracy = {
            size: split_accuracy(load_trained(spec, result.path, size), spec, dataset, "test", size)
            for size in spec.input_sizes
        }
        rows.append(
            [
                name,
                dataset.source.name,
                spec.train.train_size,
                f"{seconds:.0f} s" if result.trained_now else "cached",
                "  ".join(f"{size}px {acc:.1%}" for size, acc in accuracy.items()),
                result.path.name,
                checkpoint_sha256(result.path)[:16],
            ]
        )
    headers = [
        "model",
        "dataset",
        "trained at",
        "training",
        "test accuracy",
        "checkpoint",
        "tensors sha256",
    ]
    print(tabulate(rows, headers=headers))
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.json:
        # What a CI job matrix shards by: the models a plain run selects.
        names = select_models(args.models)
        print(json.dumps(names))
        return 0
    rows = []
    for name in select_models(args.models or ("*",)):
        spec = get_spec(name)
        rows.append(
            [
                name,
                len(spec.classes),
                spec.positive_class,
                ",".join(map(str, spec.input_sizes)),
                spec.in_chans,
                spec.dataset.name,
                "yes" if spec.in_default_matrix else "no",
            ]
        )
    headers = ["model", "classes", "positive", "sizes", "chans", "bundled data", "default"]
    print(tabulate(rows, headers=headers))
    print(f"\nbackends: {', '.join(list_backends())}")
    return 0


def _capabilities(args: argparse.Namespace) -> int:
    """The capability table, with this machine's own verdict beside the declared one."""
    rows = []
    for backend, precision, device, declared in capability_table():
        here = "-"
        if declared.startswith("supported"):
            here = machine_skip_reason(Case("probe", backend, precision, 1, 1, device)) or "runs"
        rows.append([backend, precision, device, declared, here])
    headers = ["backend", "precision", "device", "declared", "on this machine"]
    print(tabulate(rows, headers=headers, maxcolwidths=[None, None, None, 50, 50]))
    return 0


def _benchmarks(args: argparse.Namespace) -> int:
    print(render(args.json, largest_only=args.largest))
    return 0


def _report(args: argparse.Namespace) -> int:
    """One report of one or several results files (shards of one run, merged)."""
    documents = [(str(path), load_results(path)) for path in args.results]
    document = merge(documents) if len(documents) > 1 else documents[0][1]
    directory = args.out or args.results[0].parent
    written = write_report(document, directory, results=len(documents) > 1 or args.out is not None)
    print(written.read_text())
    print(f"medgate: wrote {written}", file=sys.stderr)
    passed, _ = headline(document)
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medgate", description=__doc__)
    parser.add_argument(
        "--zoo", type=comma_list, default=("models",), help="modules that register models"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train (or find cached) checkpoints")
    train.add_argument("--models", type=comma_list, default=(), help="model globs")
    train.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    train.add_argument("--threads", type=thread_count, default=thread_count("0"))
    train.add_argument("--dataset", action="append", help="MODEL=PATH (.npz or ImageFolder)")
    train.set_defaults(run=_train)
    listing = commands.add_parser("list", help="the registered models and backends")
    listing.add_argument("--models", type=comma_list, default=(), help="model globs")
    listing.add_argument(
        "--json", action="store_true", help="only the names a run selects, as a JSON list"
    )
    listing.set_defaults(run=_list)
    capabilities = commands.add_parser(
        "capabilities", help="which backend x precision x device combinations run, and why not"
    )
    capabilities.set_defaults(run=_capabilities)
    benchmarks = commands.add_parser("benchmarks", help="a table of a pytest-benchmark JSON file")
    benchmarks.add_argument("json", type=Path, help="a --benchmark-json or --benchmark-save file")
    benchmarks.add_argument("--largest", action="store_true", help="each model's largest size only")
    benchmarks.set_defaults(run=_benchmarks)
    report = commands.add_parser(
        "report",
        help="report.md and plots of results.json files (several: the shards of one run, merged)",
    )
    report.add_argument("results", type=Path, nargs="+", help="results.json files")
    report.add_argument(
        "--out", type=Path, default=None, help="directory (default: the first file's)"
    )
    report.set_defaults(run=_report)
    args = parser.parse_args(argv)
    _import_zoo(args.zoo)
    try:
        return int(args.run(args))
    except (
        DatasetError,
        CheckpointError,
        TrainingError,
        UnknownNameError,
        argparse.ArgumentTypeError,
        ValueError,
    ) as error:
        print(f"medgate: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
