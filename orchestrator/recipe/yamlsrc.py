"""YAML loading that remembers where every value came from (file:line:column).

PyYAML's composer gives each node a start mark; we convert nodes to plain Python values
and keep a map from the value's path (("platforms", 1), ...) to its mark, so that every
later error can name the exact place in the file.
"""

from __future__ import annotations

import re
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


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def format_path(path: Iterable[str | int]) -> str:
    """('platforms', 1, 'x') -> 'platforms[1].x'; a key that would read as nothing or as
    punctuation (' ', '', 'a b', '[x]') is quoted: ('environment', ' ') -> "environment[' ']"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


# Limits: a recipe is a small hand-written file. Anything beyond these is a mistake or an
# attack (billion laughs, stack exhaustion), refused before it costs memory or a traceback.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
MAX_SCALAR_CHARS = 64 * 1024

# YAML's printable set (YAML 1.1, section 5.1): everything else is refused, with its place.
_NON_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Control characters in a (decoded) string would reach terminals and logs through error
# messages and the environment; tab and newline are the ones scripts need.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"  # a bare `<<` value; as a key it is refused
# libyaml's parser is ~10x faster and iterative; it also bounds nesting itself.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_located(file: Path) -> Located:
    """Parse a recipe file; any problem is a ConfigError naming file:line:column."""
    text = _read_text(file)
    _check_printable(file, text)
    try:
        _check_depth(file, text)
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            raise ConfigError(
                f"{file}:1:1: the file is empty (no YAML document); expected a mapping of fields"
            )
        conv = _Converter(file)
        data = conv.convert(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else f"{file}:1:1"
        raise ConfigError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}:1:1: YAML error: {exc}") from None
    except RecursionError:  # a backstop: the depth checks should refuse such files first
        raise ConfigError(
            f"{file}:1:1: values are nested too deeply; keep nesting under {MAX_DEPTH} levels"
        ) from None
    return Located(file, data, conv.marks, conv.key_marks, conv.texts)


def _read_text(file: Path) -> str:
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{file}:1:1: the file is {size} bytes; a recipe file is at most "
                f"{MAX_FILE_BYTES} bytes: is this the right file?"
            )
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such recipe file") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, not a recipe file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    if b"\0" in raw[:8192]:
        line, col = _byte_position(raw, raw.index(b"\0"))
        raise ConfigError(
            f"{file}:{line}:{col}: this looks like a binary file (it has NUL bytes); "
            "a recipe is YAML text in UTF-8"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _byte_position(raw, exc.start)
        raise ConfigError(
            f"{file}:{line}:{col}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file "
            "as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, offset - line_start + 1


def _check_printable(file: Path, text: str) -> None:
    bad = _NON_PRINTABLE.search(text)
    if bad is None:
        return
    offset = bad.start()
    line_start = text.rfind("\n", 0, offset) + 1
    line, col = text.count("\n", 0, offset) + 1, offset - line_start + 1
    raise ConfigError(
        f"{file}:{line}:{col}: control character U+{ord(bad.group()):04X} is not allowed in "
        'YAML; remove it (write it as an escape like "\\x07" inside double quotes if meant)'
    )


def _check_depth(file: Path, text: str) -> None:
    """PyYAML composes recursively: refuse deep nesting from the (iterative) event stream
    before composing, so a hostile file cannot exhaust the stack."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else f"{file}:1:1"
                raise ConfigError(
                    f"{where}: values are nested more than "
                    f"{MAX_DEPTH} levels deep; flatten the structure"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    """Nodes to plain values, recording marks; bounded so aliases cannot expand forever."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.marks: dict[PathKey, tuple[int, int]] = {}
        self.key_marks: dict[PathKey, tuple[int, int]] = {}
        self.texts: dict[PathKey, str] = {}
        self.count = 0
        self.loader = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, what: str) -> ConfigError:
        line, col = _mark(node)
        return ConfigError(f"{self.file}:{line}:{col}: {what}")

    def convert(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        self._account(node, depth)
        self.marks[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        value = self.scalar(node)
        self.texts[path] = str(node.value)
        return value

    def _account(self, node: yaml.Node, depth: int) -> None:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(
                node,
                f"the document expands to more than {MAX_VALUES} values (anchors and aliases "
                "repeated inside each other?); write the values out",
            )
        if depth > MAX_DEPTH:  # reachable through aliases that nest inside each other
            raise self.fail(
                node, f"values are nested more than {MAX_DEPTH} levels deep; flatten the structure"
            )
        if node.tag not in _PLAIN_TAGS and node.tag not in (_TIMESTAMP_TAG, _MERGE_TAG):
            raise self.fail(
                node,
                f"the YAML tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' is not allowed in a recipe (tags construct "
                "objects); remove it and write a plain string, number, list or mapping",
            )

    def _mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                raise self.fail(
                    key_node, "mapping keys must be plain strings (no '<<', lists or mappings)"
                )
            self._account(key_node, depth + 1)
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, f"mapping keys must be strings, got {key!r}")
            if key in out:
                raise self.fail(key_node, f"{format_path((*path, key))}: duplicate key")
            child = (*path, key)
            self.key_marks[child] = _mark(key_node)
            out[key] = self.convert(value_node, child, depth + 1)
        return out

    def scalar(self, node: yaml.Node) -> Any:
        if len(node.value) > MAX_SCALAR_CHARS:
            raise self.fail(
                node,
                f"a value of {len(node.value)} characters; values are at most "
                f"{MAX_SCALAR_CHARS} characters (put long scripts in a file)",
            )
        if node.tag == _MERGE_TAG:
            return node.value
        try:
            value = self.loader.construct_object(node, deep=True)
        # PyYAML's constructors raise these for values that do not fit an explicit tag
        # (`!!bool maybe`, `!!timestamp 1`) or Python (a 5,000-digit int, date 2024-13-45).
        except (ValueError, OverflowError, KeyError, AttributeError) as exc:
            raise self.fail(node, f"{node.value[:40]!r} is not a valid value: {exc}") from None
        bad = _CONTROL.search(value) if isinstance(value, str) else None
        if bad is not None:
            raise self.fail(
                node,
                f"control character U+{ord(bad.group()):04X} in {value[:40]!r}; only tab and "
                "newline are allowed in values: remove it",
            )
        return value
