"""The package's imports point one way: a walk over the source (AST, no import) finds no cycle and no upward arrow.

Every ``import`` and ``from ... import`` statement counts, at module level or inside a function (a lazy import is
still an arrow), under ``TYPE_CHECKING`` too. ``from . import x`` is an arrow to the submodule ``x`` when there is
one. Importing a submodule also runs its parents' ``__init__``; those implicit arrows are not counted (every module
would then depend on ``vtamiq_metric/__init__.py``), so a package ``__init__`` may re-export its own submodules.

Layers, lowest first (ARCHITECTURE.md): a module may import its own layer and the layers below it, never above. The
core (everything outside ``training/``) never imports ``training/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "vtamiq_metric"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Each layer may import only itself and the layers before it. A module's layer is the first whose prefix matches its
# dotted name (without the package name); "model." covers the model/ subpackage.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("_version", "_io", "_checks", "_precision", "_device", "_links", "_plotting")),
    ("inputs and sampling", ("_validation", "sampling")),
    ("model", ("model",)),
    ("weights sources", ("hub",)),
    ("score core", ("_frontend", "api", "_torchrun")),
    ("faces", ("loss", "maps", "metrics", "cli", "")),  # "" is the package __init__
    ("training", ("training",)),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (every statement, wherever it stands)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # "vtamiq_metric.x.y" where y is a name in module x
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _layer(module: str) -> int:
    local = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if local == prefix or (prefix and local.startswith(prefix + ".")):
                return index
    raise AssertionError(f"module {module} is in no layer; add it to LAYERS in {__file__} (and ARCHITECTURE.md)")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _imports(_modules())


def test_the_walk_sees_the_imports_it_must_see(graph):
    assert "vtamiq_metric.model.weights" in graph["vtamiq_metric.hub"]  # from .model.weights import ...
    assert "vtamiq_metric._torchrun" in graph["vtamiq_metric.training.train"]  # from .. import _torchrun
    assert "vtamiq_metric.training.labels" in graph["vtamiq_metric.training.kadis.plan"]  # from ..labels import X
    assert "vtamiq_metric.model.convert" in graph["vtamiq_metric.cli.commands"]  # a lazy import inside a function
    assert "vtamiq_metric.cli.scoring" in graph["vtamiq_metric.cli"]  # a package __init__ importing its submodule


def test_no_import_cycle(graph):
    assert _cycles(graph) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_arrow_points_down_the_layers(graph):
    upward = [f"{source} ({LAYERS[_layer(source)][0]}) -> {target} ({LAYERS[_layer(target)][0]})"
              for source, targets in sorted(graph.items()) for target in sorted(targets)
              if _layer(target) > _layer(source)]
    assert upward == []


def test_core_never_imports_training(graph):
    training = f"{PACKAGE}.training"
    core = {name for name in graph if name != training and not name.startswith(training + ".")}
    assert sorted(f"{s} -> {t}" for s in core for t in graph[s] if t == training or t.startswith(training + ".")) == []


def test_model_imports_neither_hub_nor_api(graph):
    model = [name for name in graph if name.startswith(f"{PACKAGE}.model")]
    allowed = ("model", "sampling", "_io", "_version")
    bad = [f"{s} -> {t}" for s in model for t in graph[s] if not t[len(PACKAGE) + 1:].startswith(allowed)]
    assert bad == []
