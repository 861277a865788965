"""The package reads like a map: each domain imports only the domains below it, and the read side stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"

# Lower layers never import higher ones; a domain may import its own layer (flows use flows, the CLI the stack).
LAYERS: list[tuple[str, ...]] = [
    ("conveyor.schema", "conveyor.settings"),
    ("conveyor.io", "conveyor.blocks", "conveyor.events", "conveyor.environment"),
    ("conveyor.cache",),
    ("conveyor.data", "conveyor.registry.store", "conveyor.registry.storage"),
    ("conveyor.validation", "conveyor.models", "conveyor.gate.statistics"),
    ("conveyor.export",),
    ("conveyor.registry",),
    ("conveyor.gate",),
    ("conveyor.serving",),
    ("conveyor.flows", "conveyor.stack"),
    ("conveyor.cli", "conveyor.__main__"),
]
# The ML stack: what a check of a parquet file or a look at the registry must never pay for.
ML_MODULES = ("torch", "onnxruntime", "onnx", "xgboost", "sklearn")


def _layer(module: str) -> int:
    """The layer of a module: its most specific entry in LAYERS."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} belongs to no layer; add its domain to LAYERS")
    return max(matches)[1]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SOURCE / "conveyor").rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("conveyor.")}


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name refers to (``from pkg import module`` names a module too)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_imports_only_its_own_layer_or_below() -> None:
    modules = _modules()
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, path in modules.items()
        if module != "conveyor"
        for name in _imports(path)
        if (target := _known(name, modules)) and target != "conveyor" and _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_only_the_cli_and_flows_import_flows_and_only_the_cli_imports_the_cli() -> None:
    command_line = ("conveyor.cli", "conveyor.__main__")
    for module, path in _modules().items():
        for name in _imports(path):
            if name.startswith("conveyor.flows"):
                assert module.startswith(("conveyor.flows", *command_line)), f"{module} imports {name}"
            if name.startswith("conveyor.cli"):
                assert module.startswith(command_line), f"{module} imports {name}"


def test_only_the_cli_stack_and_flows_import_the_model_server() -> None:
    allowed = ("conveyor.serving", "conveyor.cli", "conveyor.__main__", "conveyor.stack", "conveyor.flows")
    for module, path in _modules().items():
        for name in _imports(path):
            if name.startswith("conveyor.serving"):
                assert module.startswith(allowed), f"{module} imports {name}"


# What the model server must not pay for at each (re)start: it scores with ONNX Runtime alone.
TRAINING_MODULES = ("torch", "sklearn", "xgboost")


def test_the_model_server_loads_no_training_library() -> None:
    probe = f"import sys, conveyor.serving.run; print(','.join(m for m in {TRAINING_MODULES!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "", f"the model server loads {loaded.stdout.strip()}"


@pytest.mark.parametrize(
    "module",
    [
        "conveyor.validation.tasks",
        "conveyor.validation.check",
        "conveyor.validation.reference",
        "conveyor.registry.store",
        "conveyor.data.landing",
        "conveyor.stack.status",
    ],
)
def test_checking_data_and_reading_the_registry_load_no_ml_library(module: str) -> None:
    probe = f"import sys, {module}; print(','.join(m for m in {ML_MODULES!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "", f"importing {module} loads {loaded.stdout.strip()}"
