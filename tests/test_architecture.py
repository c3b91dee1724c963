"""The shape of the code, checked: orch's import graph (read with `ast`, function-local
and TYPE_CHECKING imports included) has no cycles and no import of a later stage; the
Docker SDK is imported by one module; the environment is read by one module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "orchestrator"

# The pipeline's layers, earliest first: a module may import its own layer or earlier.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("orchestrator", "errors", "archs", "options", "util"),
    # reference data read from images/ (policies, image definitions, whether the mirror
    # serves a definition's sources): recipes are checked against it, plans name images by it
    ("plan.catalog", "images.definition", "images.sources"),
    ("recipe",),
    ("plan",),
    ("container", "report"),
    ("images",),
    ("emulation",),
    ("deps",),
    ("audit",),  # the wheel checks the audit step and `orch audit` run
    ("pipeline",),
    ("cli", "__main__"),
)
DOCKER_MODULES = {"orchestrator.container.engine"}
ENVIRON_MODULES = {"orchestrator.options"}


@cache
def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), filename=str(modules()[name]))


def imported_names(name: str) -> Iterator[str]:
    """Every module name an import statement anywhere in the module names."""
    is_package = modules()[name].name == "__init__.py"
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules()]
            yield from subs
            if len(subs) < len(node.names):
                yield base


def edges() -> set[tuple[str, str]]:
    return {
        (name, target)
        for name in modules()
        for target in imported_names(name)
        if target in modules() and target != name
    }


def layer(name: str) -> int:
    rel = name.removeprefix("orchestrator").removeprefix(".") or "orchestrator"
    best = (-1, -1)  # (prefix length, layer): the longest matching prefix decides
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if rel == prefix or rel.startswith(prefix + "."):
                best = max(best, (len(prefix), index))
    assert best[1] >= 0, f"{name} is in no layer: add its package to LAYERS"
    return best[1]


def cycles(graph: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    succ: dict[str, list[str]] = {}
    for a, b in graph:
        succ.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in succ.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted({a for a, _ in graph} | {b for _, b in graph}):
        if v not in index:
            visit(v)
    return found


def test_import_graph_has_no_cycles() -> None:
    graph = edges()
    assert len(graph) > 50  # the walk found the imports
    assert cycles(graph) == []


def test_cycle_detection_finds_a_cycle() -> None:
    assert cycles({("orchestrator.a", "orchestrator.b"), ("orchestrator.b", "orchestrator.a")})


def test_no_module_imports_a_later_stage() -> None:
    upward = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, b in sorted(edges())
        if layer(b) > layer(a)
    ]
    assert upward == []


def test_docker_is_imported_by_the_engine_only() -> None:
    users = {
        name
        for name in modules()
        if any(n == "docker" or n.startswith("docker.") for n in imported_names(name))
    }
    assert users == DOCKER_MODULES


def _reads_environment(name: str) -> bool:
    names = {"environ", "getenv", "environb"}
    for node in ast.walk(tree(name)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in names
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {a.name for a in node.names} & names
        ):
            return True
    return False


def test_environment_is_read_in_options_only() -> None:
    readers = {name for name in modules() if _reads_environment(name)}
    assert readers == ENVIRON_MODULES
