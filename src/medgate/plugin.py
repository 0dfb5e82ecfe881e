"""pytest hooks: options, markers, the matrix, training before the run, machine info."""

from __future__ import annotations

import importlib
import os
import random
import time
from typing import Any

import pytest
import torch

import medgate.backends  # noqa: F401  (registers the built-in backends)
from medgate.backends.base import Session
from medgate.backends.torch_precision import strict_fp32
from medgate.base.benchmark_runs import save_sides
from medgate.base.revision import BaseRevisionError
from medgate.base.run import start_base
from medgate.core.config import SuiteConfig
from medgate.core.files import BaselineError
from medgate.core.fingerprint import Fingerprint, machine_fingerprint
from medgate.core.machine import machine_facts
from medgate.core.matrix import (
    Case,
    build_cases,
    check_model_paths,
    check_selection,
    check_sizes,
    select_models,
)
from medgate.core.options import add_options
from medgate.core.registry import UnknownNameError
from medgate.data import DatasetError
from medgate.gates.latency.store import latency_dir
from medgate.gates.memory.markers import limit_memory_marks
from medgate.gates.memory.memray_peak import TracingError, memray_peak, trace_python_objects
from medgate.markers import MARKERS, TestOptions, case_marks
from medgate.results.run import RunClock, WrittenReport, finish_report, reused_notes
from medgate.summary import roofline_table, write_summary
from medgate.training import CheckpointError, TrainingError
from medgate.workspace import Workspace

WORKSPACE = pytest.StashKey[Workspace]()
CLOCK = pytest.StashKey[RunClock]()
REPORT = pytest.StashKey[WrittenReport]()
#: Models whose checkpoint a case of the run will train, and those whose training failed.
TO_TRAIN = pytest.StashKey[set[str]]()
TRAINING_FAILED = pytest.StashKey[dict[str, str]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from medgate import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[CLOCK] = clock = RunClock()
    config.pluginmanager.register(clock, "medgate-clock")
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    suite = SuiteConfig.from_pytest_config(config)
    # Inductor's FX-graph cache is keyed by the traced graph, its inputs' metadata, the inductor
    # config and the torch build, so it serves no stale graph; kept beside medgate's other
    # caches (not in /tmp, which a reboot empties), a warm torch.compile costs tracing only.
    # An explicit TORCHINDUCTOR_CACHE_DIR wins. Base-revision workers inherit it.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(suite.cache_dir / "inductor"))
    trace_python_objects(config)
    for module in suite.zoo:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise pytest.UsageError(
                f"ini key medgate_zoo names {module!r}, which cannot be imported ({error}); "
                "list importable packages that register models"
            ) from error
    try:
        check_selection(suite.matrix)
        check_sizes(suite.matrix)
        check_model_paths(suite.matrix, "--checkpoint", suite.checkpoints)
        check_model_paths(suite.matrix, "--dataset", suite.datasets)
    except UnknownNameError as error:
        raise pytest.UsageError(f"medgate: {error}") from error
    _check_given_files(suite)
    torch.set_num_threads(suite.threads)
    strict_fp32()
    facts = machine_fingerprint(suite.threads)
    config.hook.pytest_medgate_fingerprint(config=config, fingerprint=facts)
    workspace = Workspace(suite, fingerprint=Fingerprint(facts))
    other = suite.latency_baseline_machine
    if other is not None and not (latency_dir(suite.baseline_dir) / other).is_dir():
        raise pytest.UsageError(
            f"--latency-baseline-machine={other}: no such directory under "
            f"{latency_dir(suite.baseline_dir)}; name one of the fingerprint ids there"
        )
    # Ceilings become markers while tests are generated; a broken file must stop the run here,
    # as one error, rather than as a collection error of every memory test.
    models = select_models(suite.matrix.models)
    try:
        for model in models:
            workspace.memory.baseline(model)
        workspace.latency.preload(models)
    except BaselineError as error:
        raise pytest.UsageError(f"medgate: {error}") from error
    workspace.order_seed = (
        suite.latency_seed if suite.latency_seed is not None else random.randrange(10**6)
    )
    if suite.base is not None:
        try:
            workspace.attach_base(start_base(suite, workspace.order_seed, workspace.fingerprint.id))
        except BaseRevisionError as error:
            raise pytest.UsageError(f"medgate: {error}") from error
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        workspace.uncaptured = capture.global_and_fixture_disabled
    config.stash[WORKSPACE] = workspace


def _check_given_files(suite: SuiteConfig) -> None:
    """A checkpoint or dataset the user named must exist before anything is measured: found
    missing inside a test it would be one error per case."""
    for model, path in suite.checkpoints.items():
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise pytest.UsageError(
                f"medgate: --checkpoint {model}={path}: {what}; give the path of a .pt file "
                "holding a state_dict"
            )
    for model, path in suite.datasets.items():
        if not path.exists():
            raise pytest.UsageError(
                f"medgate: --dataset {model}={path}: does not exist; give a MedMNIST .npz or "
                "an ImageFolder directory"
            )


def pytest_unconfigure(config: pytest.Config) -> None:
    workspace = config.stash.get(WORKSPACE, None)
    if workspace is not None:
        workspace.close()


def workspace_of(config: pytest.Config) -> Workspace:
    return config.stash[WORKSPACE]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "medgate_case" not in metafunc.fixturenames:
        return
    workspace = workspace_of(metafunc.config)
    options = TestOptions.from_marker(
        metafunc.definition.get_closest_marker("medgate"), metafunc.definition.nodeid
    )
    suite = workspace.config
    batch = {
        "latency": 1,
        "throughput": suite.throughput_batch,
        "agreement": suite.agreement_samples,
        "accuracy": suite.accuracy_batch,
    }[options.batch]
    cases = build_cases(suite.matrix, batch)
    metafunc.parametrize(
        "medgate_case",
        [
            pytest.param(
                case,
                id=case.id,
                marks=case_marks(
                    case,
                    options.batch,
                    workspace.dataset_name(case.model),
                    against_base=suite.base is not None,
                )
                + limit_memory_marks(
                    workspace.memory, case, options.memory, suite.base is not None
                ),
            )
            for case in cases
        ],
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    marker = item.get_closest_marker("medgate")
    figure = marker.kwargs.get("memory") if marker is not None else None
    case = _case_of(item)
    if call.when != "call" or figure is None or case is None or call.excinfo is not None:
        return
    try:
        measured = memray_peak(item)
    except TracingError as error:
        report = outcome.get_result()
        report.outcome = "failed"
        report.longrepr = str(error)
        return
    if measured is None:
        return
    workspace = workspace_of(item.config)
    artifact = dict(item.user_properties).get("artifact_bytes")
    workspace.memory.observe(
        case,
        figure,
        measured,
        workspace.facts(case.model, case.input_size).param_bytes,
        artifact if isinstance(artifact, int) else None,
    )


def _case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("medgate_case") if callspec is not None else None
    return case if isinstance(case, Case) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run each prepared session's tests back to back, so a session is built once; within a
    model, sessions run in a shuffled order (``--latency-seed``), so a drift of the machine
    over the run lands on different cases each run instead of always on the last ones."""
    sessions: dict[str, list[tuple[str, str, str, int, str]]] = {}
    for item in items:
        case = _case_of(item)
        if case is not None and case.session_key not in sessions.get(case.model, []):
            sessions.setdefault(case.model, []).append(case.session_key)
    shuffler = random.Random(workspace_of(config).order_seed)
    first_seen: dict[tuple[str, str, str, int, str], int] = {}
    for keys in sessions.values():
        shuffler.shuffle(keys)
        for key in keys:
            first_seen[key] = len(first_seen)

    def order(indexed: tuple[int, pytest.Item]) -> tuple[int, int]:
        case = _case_of(indexed[1])
        return (first_seen[case.session_key] if case else -1, indexed[0])

    if first_seen:
        items[:] = [item for _, item in sorted(enumerate(items), key=order)]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Resolve every checkpoint the selected cases need; those still to train run last, the
    cheapest recipe first, each trained just before its model's first case
    (``pytest_runtest_protocol``), so a cold run gives verdicts while the rest trains."""
    config = session.config
    if config.option.collectonly:
        return
    config.stash[CLOCK].case_tests = {
        item.nodeid for item in session.items if _case_of(item) is not None
    }
    running = [
        (item, case)
        for item in session.items
        if (case := _case_of(item)) is not None and item.get_closest_marker("skip") is None
    ]
    if not running:
        return
    workspace = workspace_of(config)
    started = time.perf_counter()
    with workspace.uncaptured():
        try:
            cost = {
                model: workspace.training_cost(model)
                for model in sorted({case.model for _, case in running})
                if workspace.needs_training(model)
            }
        except (DatasetError, CheckpointError) as error:
            raise pytest.UsageError(f"medgate: {error}") from error
    config.stash[CLOCK].add_step("training", time.perf_counter() - started)
    if cost:
        untrained = sorted(cost, key=lambda model: (cost[model], model))
        rank = {model: position + 1 for position, model in enumerate(untrained)}
        order = sorted(
            enumerate(session.items),
            key=lambda indexed: (
                rank.get(getattr(_case_of(indexed[1]), "model", ""), 0),
                indexed[0],
            ),
        )
        session.items[:] = [item for _, item in order]
        config.stash[TO_TRAIN] = set(untrained)
        with workspace.uncaptured():
            workspace.stream.write(
                f"medgate: {len(untrained)} checkpoint(s) not in the cache "
                f"({', '.join(untrained)}): each trains before its model's first measured case, "
                "the cheapest recipe first\n"
            )
    # A broken baseline file is one error before the run, not the same failure on every case.
    for model in sorted(
        {case.model for item, case in running if item.get_closest_marker("accuracy")}
    ):
        try:
            workspace.accuracy.baseline(model)
        except BaselineError as error:
            raise pytest.UsageError(f"medgate: {error}") from error


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    """Train the checkpoint of the item's model before its first case, outside the case's
    phases, so the training counts as its own lane and no case's setup waits on it. A failed
    training is kept and raised by every case of that model (``pytest_runtest_setup``)."""
    to_train = item.config.stash.get(TO_TRAIN, set())
    case = _case_of(item)
    if case is None or case.model not in to_train or item.get_closest_marker("skip"):
        return
    workspace = workspace_of(item.config)
    if (
        workspace.base is not None
        and workspace.config.base_identical == "skip"
        and workspace.base.identity(case.model).identical
    ):
        return
    to_train.discard(case.model)
    started = time.perf_counter()
    with workspace.uncaptured():
        try:
            workspace.weights(case.model)
        except (DatasetError, CheckpointError, TrainingError) as error:
            item.config.stash.setdefault(TRAINING_FAILED, {})[case.model] = str(error)
    item.config.stash[CLOCK].add_step("training", time.perf_counter() - started)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A case whose every input hashes the same on both sides is not measured; a case whose
    checkpoint failed to train errors with the reason."""
    workspace = item.config.stash.get(WORKSPACE, None)
    case = _case_of(item)
    failed = item.config.stash.get(TRAINING_FAILED, {})
    if case is not None and case.model in failed:
        pytest.fail(f"medgate: model {case.model}: {failed[case.model]}", pytrace=False)
    if workspace is None or workspace.base is None or case is None:
        return
    identity = workspace.base.identity(case.model)
    if identity.identical and workspace.config.base_identical == "skip":
        workspace.base.identical_cases.append(case)
        pytest.skip(
            f"identical to base: {case.model}'s engine, model code, weights, data and library "
            "versions hash the same on both sides"
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    workspace = workspace_of(config)
    suite = workspace.config
    base = workspace.base
    lines = []
    if base is not None:
        lines.append(
            f"medgate: base revision {base.base.label}, compared side by side in this run: each "
            "side's own engine, zoo, checkpoints, preprocessing and data in a worker process of "
            f"its own ({suite.threads} threads each), timed by this harness; worker logs in "
            f"{base.log_dir}"
        )
    return [
        *lines,
        f"medgate: threads={suite.threads} throughput-batch={suite.throughput_batch} "
        f"cache={suite.cache_dir}",
        f"medgate: machine fingerprint {workspace.fingerprint.id} "
        f"({workspace.fingerprint.device_class('cpu')}); session order seed "
        f"{workspace.order_seed} (--latency-seed)",
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record baselines under ``--update-baselines``, unless the run was cut short; save both
    sides of a run against the base as pytest-benchmark runs when it was asked to save; write
    the run's report."""
    workspace = session.config.stash.get(WORKSPACE, None)
    if workspace is None:
        return
    base = workspace.base
    if base is not None:
        for name in save_sides(session.config, base, base.latency.values()):
            base.notes.append(f"saved the {name} rounds as a pytest-benchmark run")
    if workspace.config.update_baselines and exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.TESTS_FAILED,
    ):
        workspace.baselines_written = [path for gate in workspace.gates for path in gate.write()]
    if session.config.option.collectonly:
        return
    with workspace.uncaptured():
        written = finish_report(workspace, session.config.stash[CLOCK], int(exitstatus))
    if written is not None:
        session.config.stash[REPORT] = written


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    workspace = config.stash.get(WORKSPACE, None)
    if workspace is None:
        return
    write_summary(terminalreporter, workspace)
    clock = config.stash[CLOCK]
    if clock.cases:
        terminalreporter.write_line("medgate: seconds per lane and step")
        for line in clock.profile_lines():
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"medgate: {clock.line()}")
    for note in reused_notes(workspace):
        terminalreporter.write_line(f"medgate: {note}")
    report = config.stash.get(REPORT, None)
    if report is not None:
        table = roofline_table(report.document)
        if table:
            terminalreporter.write_sep("-", "medgate: roofline and energy (peaks of this run)")
            terminalreporter.write_line(table)
        terminalreporter.write_line(
            f"medgate: report {report.path} (results.json, plots/ beside it)"
        )


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    workspace = workspace_of(config)
    info = machine_facts(workspace.config.threads)
    info["fingerprint"] = dict(workspace.fingerprint.facts)
    info["fingerprint_id"] = workspace.fingerprint.id
    config.hook.pytest_medgate_machine_info(config=config, info=info)
    machine_info["medgate"] = info


@pytest.fixture(scope="session")
def medgate_workspace(pytestconfig: pytest.Config) -> Workspace:
    return workspace_of(pytestconfig)


@pytest.fixture
def medgate_session(medgate_case: Case, medgate_workspace: Workspace) -> Session:
    return medgate_workspace.session(medgate_case)


@pytest.fixture
def medgate_inputs(medgate_case: Case, medgate_workspace: Workspace) -> torch.Tensor:
    return medgate_workspace.inputs(medgate_case.model, medgate_case.input_size, medgate_case.batch)
