"""pytest hooks: options, markers, the matrix, training before the run, machine info."""

from __future__ import annotations

import dataclasses
import importlib
import os
import random
from typing import Any, Literal

import pytest
import torch

import medgate.backends  # noqa: F401  (registers the built-in backends)
from medgate.backends.base import Session
from medgate.backends.torch_precision import strict_fp32
from medgate.core import machine
from medgate.core.config import SuiteConfig, add_options
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
    skip_reason,
)
from medgate.core.registry import UnknownNameError, get_spec
from medgate.data import DatasetError
from medgate.gates.accuracy.report import accuracy_tables, missing_baselines
from medgate.gates.agreement.check import summary_table
from medgate.gates.latency.report import latency_notes, latency_table
from medgate.gates.latency.store import latency_dir
from medgate.gates.memory.report import memory_table
from medgate.training import CheckpointError
from medgate.workspace import Workspace

WORKSPACE = pytest.StashKey[Workspace]()

MARKERS = {
    "cpu": "the case runs on the CPU",
    "cuda": "the case runs on a CUDA GPU (skipped with a reason where there is none)",
    "smoke": "one input size per model and backend: the quick pre-merge lane",
    "latency": "timed with pytest-benchmark, judged against baselines/latency",
    "stages": "preprocessing, feature extractor and head timed apart (p50/p95/p99 each)",
    "agreement": "a backend's logits checked against eager fp32",
    "accuracy": "metrics on the model's test split",
    "memory": "peak memory, measured apart from the timed tests",
    "medgate(batch='latency'|'throughput'|'agreement'|'accuracy')": (
        "which batch the test's cases use: 1, --throughput-batch, --agreement-samples or "
        "--accuracy-batch"
    ),
}


BATCHES = ("latency", "throughput", "agreement", "accuracy")


@dataclasses.dataclass(frozen=True)
class TestOptions:
    """Keyword arguments of ``@pytest.mark.medgate``; unknown ones are an error."""

    batch: Literal["latency", "throughput", "agreement", "accuracy"] = "latency"
    #: The memory figure the test measures (its ceiling becomes a ``limit_memory`` marker).
    memory: Literal["inference", "session"] | None = None

    @classmethod
    def from_marker(cls, marker: pytest.Mark | None, where: str) -> TestOptions:
        if marker is None:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(marker.kwargs) - known
        if marker.args or unknown:
            raise pytest.UsageError(
                f"{where}: @pytest.mark.medgate takes only {', '.join(sorted(known))} "
                f"as keywords (got args {marker.args}, keywords {sorted(unknown)})"
            )
        options = cls(**marker.kwargs)
        if options.batch not in BATCHES:
            raise pytest.UsageError(f"{where}: batch must be one of {', '.join(BATCHES)}")
        if options.memory not in (None, "inference", "session"):
            raise pytest.UsageError(f"{where}: memory must be 'inference' or 'session'")
        return options


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from medgate import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    suite = SuiteConfig.from_pytest_config(config)
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


def _marks(case: Case, batch: str, dataset: str) -> list[pytest.MarkDecorator]:
    spec = get_spec(case.model)
    marks = [getattr(pytest.mark, case.device)]
    if case.input_size == spec.default_smoke_size:
        marks.append(pytest.mark.smoke)
    reason = skip_reason(case)
    if reason is not None:
        marks.append(pytest.mark.skip(reason=reason))
    for known in spec.known_disagreements:
        if batch in known.gates and known.matches(
            case.backend, case.precision, case.input_size, dataset, machine.cpu().flags, case.device
        ):
            marks.append(pytest.mark.xfail(strict=True, reason=f"known: {known.reason}"))
            break
    return marks


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
                marks=_marks(case, options.batch, workspace.dataset_name(case.model))
                + _memory_marks(workspace, case, options.memory),
            )
            for case in cases
        ],
    )


def _host_memory_bytes() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _memory_marks(
    workspace: Workspace, case: Case, figure: str | None
) -> list[pytest.MarkDecorator]:
    """pytest-memray's ``limit_memory`` at the case's stored ceiling. A case with no ceiling yet
    is still measured (the marker is what turns memray on for a test), limited only by the
    machine's RAM, and reported as "no ceiling yet"."""
    if figure is None:
        return []
    ceiling = None if workspace.config.update_baselines else workspace.memory.ceiling(case, figure)
    limit = ceiling.ceiling_bytes if ceiling is not None else _host_memory_bytes()
    return [pytest.mark.limit_memory(f"{limit} B")]


def _measured_peak(item: pytest.Item) -> int | None:
    """What ``limit_memory`` compared with its limit: the bytes live at the high watermark,
    summed over every thread (torch's and ONNX Runtime's pools allocate from their own)."""
    manager = item.config.pluginmanager.getplugin("memray_manager")
    result = manager.results.get(item.nodeid) if manager is not None else None
    if result is None:
        return None
    from memray import FileReader

    records = FileReader(result.result_file).get_high_watermark_allocation_records(
        merge_threads=True
    )
    return sum(record.size for record in records)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    yield
    marker = item.get_closest_marker("medgate")
    figure = marker.kwargs.get("memory") if marker is not None else None
    case = _case_of(item)
    if call.when != "call" or figure is None or case is None or call.excinfo is not None:
        return
    measured = _measured_peak(item)
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
    """Train every checkpoint the selected cases need, before any timing starts."""
    config = session.config
    if config.option.collectonly:
        return
    running = [
        (item, case)
        for item in session.items
        if (case := _case_of(item)) is not None and item.get_closest_marker("skip") is None
    ]
    if not running:
        return
    workspace = workspace_of(config)
    with workspace.uncaptured():
        for model in sorted({case.model for _, case in running}):
            try:
                workspace.weights(model)
            except (DatasetError, CheckpointError) as error:
                raise pytest.UsageError(f"medgate: model {model}: {error}") from error
    # A broken baseline file is one error before the run, not the same failure on every case.
    for model in sorted(
        {case.model for item, case in running if item.get_closest_marker("accuracy")}
    ):
        try:
            workspace.accuracy.baseline(model)
        except BaselineError as error:
            raise pytest.UsageError(f"medgate: {error}") from error


def pytest_report_header(config: pytest.Config) -> list[str]:
    workspace = workspace_of(config)
    suite = workspace.config
    return [
        f"medgate: threads={suite.threads} throughput-batch={suite.throughput_batch} "
        f"cache={suite.cache_dir}",
        f"medgate: machine fingerprint {workspace.fingerprint.id} "
        f"({workspace.fingerprint.device_class('cpu')}); session order seed "
        f"{workspace.order_seed} (--latency-seed)",
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record baselines under ``--update-baselines``, unless the run was cut short."""
    workspace = session.config.stash.get(WORKSPACE, None)
    if workspace is None or not workspace.config.update_baselines:
        return
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    workspace.baselines_written = [path for gate in workspace.gates for path in gate.write()]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    workspace = config.stash.get(WORKSPACE, None)
    if workspace is None:
        return
    if workspace.agreements:
        terminalreporter.write_sep("-", "medgate: agreement with eager fp32")
        terminalreporter.write_line(summary_table(workspace.agreements))
    if workspace.accuracy.results:
        table, failures = accuracy_tables(workspace.accuracy.results)
        terminalreporter.write_sep("-", "medgate: accuracy on the test split")
        terminalreporter.write_line(table)
        if failures:
            terminalreporter.write_sep("-", "medgate: accuracy findings that need a look")
            terminalreporter.write_line(failures)
        if not workspace.config.update_baselines:
            for model, missing in missing_baselines(workspace.accuracy.results).items():
                terminalreporter.write_line(
                    f"medgate: {model}: {len(missing)} case(s) have no accuracy baseline in "
                    f"{workspace.accuracy.display_path(model)} yet (not compared); record them "
                    "with `pytest perf_tests -m accuracy --update-baselines` and commit the file"
                )
    if workspace.memory.figures:
        terminalreporter.write_sep("-", "medgate: peak memory (memray, all threads)")
        terminalreporter.write_line(memory_table(workspace.memory.figures.values()))
        without_ceiling = sorted(
            {f.case.model for f in workspace.memory.figures.values() if f.ceiling is None}
        )
        if not workspace.config.update_baselines:
            for model in without_ceiling:
                terminalreporter.write_line(
                    f"medgate: {model}: cases without a memory ceiling in "
                    f"{workspace.memory.display_path(model)} were measured, not gated; record "
                    "them with `pytest perf_tests -m memory --update-baselines`"
                )
    if workspace.latency.results:
        terminalreporter.write_sep(
            "-", f"medgate: latency on {workspace.fingerprint.id} vs baselines/latency"
        )
        terminalreporter.write_line(latency_table(workspace.latency.results.values()))
        for note in latency_notes(workspace.latency.results.values()):
            terminalreporter.write_line(f"medgate: {note}")
    for path in workspace.baselines_written:
        terminalreporter.write_line(f"medgate: wrote {path}; review the diff before committing")
    for gate in workspace.gates:
        for note in gate.notes:
            terminalreporter.write_line(f"medgate: {note}")


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
