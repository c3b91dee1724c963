"""YAML loading that remembers where every value came from (file:line:column).

PyYAML's composer gives each node a start mark; we convert nodes to plain Python values
and keep a map from the value's path (("platforms", 1), ...) to its mark, so that every
later error can name the exact place in the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Located:
    """A parsed YAML document plus the position of each of its values."""

    file: Path
    data: Any
    marks: dict[PathKey, tuple[int, int]]  # path -> (line, column), 1-based
    key_marks: dict[PathKey, tuple[int, int]]  # path of a mapping key -> its own position
    texts: dict[PathKey, str] = field(default_factory=dict)  # scalar -> its text as written

    def text(self, path: Iterable[str | int]) -> str | None:
        """A scalar exactly as the file spells it (`0755`, `yes`, `1.10`), for messages."""
        return self.texts.get(tuple(path))

    def where(self, path: Iterable[str | int], *, key: bool = False) -> str:
        """`file:line:col` of the value at path, or of the nearest enclosing value."""
        p = tuple(path)
        table = self.key_marks if key else self.marks
        while p not in table and p:
            p = p[:-1]
            table = self.marks
        line, col = table.get(p, (1, 1))
        return f"{self.file}:{line}:{col}"


def format_path(path: Iterable[str | int]) -> str:
    """('platforms', 1, 'x') -> 'platforms[1].x'"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def load_located(file: Path) -> Located:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such recipe file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    located = Located(file=file, data=None, marks={}, key_marks={})
    data = _convert(node, (), located, file) if node is not None else None
    return Located(file, data, located.marks, located.key_marks, located.texts)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, path: PathKey, out_doc: Located, file: Path) -> Any:
    out_doc.marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node)  # scalars only
            if not isinstance(key, str):
                line, col = _mark(key_node)
                raise ConfigError(f"{file}:{line}:{col}: mapping keys must be strings, got {key!r}")
            if key in out:
                line, col = _mark(key_node)
                raise ConfigError(
                    f"{file}:{line}:{col}: {format_path((*path, key))}: duplicate key"
                )
            child = (*path, key)
            out_doc.key_marks[child] = _mark(key_node)
            out[key] = _convert(value_node, child, out_doc, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), out_doc, file) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode):
        out_doc.texts[path] = str(node.value)
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)
