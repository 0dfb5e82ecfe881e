"""The engine's layout is its architecture: imports point one way, plugin -> gates ->
backends / data -> core, no gate imports another, and no module needs another imported first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lower layers never import higher ones. Gates sit above backends and data.
LAYERS = {
    "core": 0,
    "data": 1,
    "size_state": 1,
    "operating_point": 1,
    "training": 1,
    "train_worker": 1,
    "backends": 1,
    "gates": 2,
}
TOP = 3  # the plugin, the workspace, the CLI, the public API


def _modules() -> list[str]:
    names = []
    for path in sorted((SRC / "medgate").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def _gate(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "gates" else None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, leaving out ``if TYPE_CHECKING:`` blocks (annotations, never executed)."""
    kept: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        kept.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return kept


def _imports(module: str) -> set[str]:
    """Every medgate module ``module`` imports when it runs, at the top or in a function."""
    path = SRC / Path(*module.split("."))
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in _runtime_nodes(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("medgate"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medgate"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    known = set(_modules())
    return {name for name in found if name in known and name != module}


@pytest.mark.parametrize("module", _modules())
def test_imports_point_down_and_no_gate_imports_another(module: str) -> None:
    for imported in _imports(module):
        assert _layer(imported) <= _layer(module), f"{module} imports {imported}, a higher layer"
        if _gate(module) and _gate(imported):
            assert _gate(imported) == _gate(module), f"gate {module} imports gate {imported}"


def test_every_module_imports_first_and_alone() -> None:
    """An import cycle shows as a module that fails when nothing imported its partner first."""
    script = (
        "import importlib, sys\n"
        "failures = []\n"
        f"for name in {_modules()!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'medgate']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failures.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failures))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", result.stdout


def test_every_gate_speaks_the_gate_protocol(tmp_path: Path) -> None:
    """The plugin records, writes and prints every gate through ``Gate`` alone."""
    from medgate.core.fingerprint import Fingerprint
    from medgate.gates.accuracy.run import AccuracyLedger
    from medgate.gates.agreement.run import AgreementLedger
    from medgate.gates.base import Gate
    from medgate.gates.latency.run import LatencyLedger
    from medgate.gates.memory.run import MemoryLedger

    gates = [
        AccuracyLedger(tmp_path, tmp_path, update=True),
        MemoryLedger(tmp_path, tmp_path, update=True, headroom=0.1, threads=2),
        LatencyLedger(tmp_path, tmp_path, True, Fingerprint({"cpu": "x"})),
        AgreementLedger(update=True),
    ]
    assert [gate.lane for gate in gates] == ["accuracy", "memory", "latency", "agreement"]
    for gate in gates:
        assert isinstance(gate, Gate)
        assert gate.write() == []  # nothing recorded, nothing written
        assert gate.notes == []
        assert gate.verdicts() == {}
