"""The import graph of ``simulation``, ``marketplace`` and ``agents``: no cycles
(imports inside functions included), and the layering the architecture promises.

Walks the source with ``ast`` (nothing is imported), resolving ``from X import Y``
to the module ``X.Y`` when that is a module and to ``X`` otherwise.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("simulation", "marketplace", "agents")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _lazy_exports() -> dict[str, str]:
    """``package.Name -> package.module`` for every name a package ``__init__`` re-exports
    lazily through its ``_EXPORTS`` table (see ``marketplace/_lazy.py``)."""
    out: dict[str, str] = {}
    for mod, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
                and isinstance(node.value, ast.Dict)
            ):
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    assert isinstance(key, ast.Constant) and isinstance(value, ast.Constant)
                    out[f"{mod}.{key.value}"] = f"{mod}.{value.value}"
    return out


LAZY = _lazy_exports()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (itself or its closest parent), if any; a
    lazily re-exported name resolves to the module that defines it."""
    if name in LAZY:
        return LAZY[name]
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every name ``module`` imports anywhere in its body (lazy imports included)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def project_edges() -> dict[str, set[str]]:
    """Module → the project modules it imports (a package's ``__init__`` counts as
    the package; importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``)."""
    graph: dict[str, set[str]] = {}
    for mod in MODULES:
        deps: set[str] = set()
        for name in imports_of(mod):
            target = _resolve(name)
            if target is not None and target != mod:
                deps.add(target)
        graph[mod] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve() -> None:
    # ``from . import x`` in a package __init__ and ``from .x import y`` in a module.
    assert _resolve("simulation.fl.training.run_client_task") == "simulation.fl.training"
    assert _resolve("torch.nn") is None
    # A lazy re-export counts as an import of the module that defines the name.
    assert _resolve("simulation.world.World") == "simulation.world.core"


def test_no_import_cycles() -> None:
    cycle = find_cycle(project_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


FORBIDDEN = {
    "marketplace": ("torch", "flwr", "opacus", "ray", "simulation", "agents"),
    "agents": ("torch", "flwr", "opacus", "ray", "simulation", "marketplace"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    """``marketplace`` is pure Python (no torch, no Flower); ``agents`` is numpy only."""
    bad = []
    for mod in MODULES:
        if mod.split(".")[0] != package:
            continue
        for name in imports_of(mod):
            top = name.split(".")[0]
            if top in FORBIDDEN[package]:
                bad.append(f"{mod} imports {name}")
    assert not bad, bad


# Subpackages of simulation, bottom to top: a package may import only those below it.
LAYERS = (
    ("errors", "rng", "registry", "names"),
    ("config",),
    ("fl",),
    ("world",),
    ("scenario",),
    ("results",),
    ("engine",),
    ("study",),
    ("outputs",),
    ("cli",),
)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "simulation" or len(parts) < 2:
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module}: simulation.{parts[1]} is in no layer of LAYERS")


def test_simulation_subpackages_import_downwards_only() -> None:
    bad = []
    for mod, deps in project_edges().items():
        here = _layer(mod)
        if here is None:
            continue
        for dep in deps:
            there = _layer(dep)
            if there is not None and there > here:
                bad.append(f"{mod} -> {dep}")
    assert not bad, bad
