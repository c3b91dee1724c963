"""Recipes that are wrong in every way a person or a program could make them wrong.

A property test (hypothesis) mutates valid recipes -- wrong types, unknown keys, unicode,
huge values, anchors and aliases, tags, deep nesting, raw byte damage -- and loads each
through the real loader: the outcome is a valid Recipe or a ConfigError that names
file:line:column, never another exception. Named hostile files are checked one by one,
through `orch plan` too (exit 2, no traceback).
"""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ConfigError
from orchestrator.recipe.load import load_recipe
from orchestrator.recipe.model import Recipe
from tests.support.run import EXAMPLES, orch

FUZZ_EXAMPLES = 1200
SHA = "a" * 64
BASES: list[dict[str, Any]] = [
    {"schema": 1, "project": "proj"},
    {
        "schema": 1,
        "name": "fuzzdemo",
        "project": "proj",
        "python": ["3.9", "3.11"],
        "platforms": ["manylinux_2_31"],
        "archs": ["x86_64"],
        "build": ["cp3*"],
        "skip": "cp39-*",
        "environment": {"CFLAGS": "-O2", "DEBUG": "1", "N": "3"},
        "before-build": ["echo before"],
        "repair": {"exclude": ["libcuda.so.1"], "enabled": True},
        "test": {"requires": ["pytest"], "imports": ["bzdemo"], "command": "python -c 1"},
        "audit": {"allow-exports": ["foo_*"]},
        "dependencies": [
            {"use": "zlib"},
            {
                "name": "mylib",
                "version": "1.0",
                "source": {"url": "http://127.0.0.1:1/mylib-1.0.tar.gz", "sha256": SHA},
                "build": {"system": "make", "options": ["-j2"], "env": {"X": "1"}},
                "requires": ["zlib"],
                "exports": {"libs": ["mylib"], "pkg-config": ["mylib"]},
            },
        ],
    },
]
LOCATED = re.compile(r"^/\S+:\d+:\d+: \S")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="orch-fuzz-") as d:
        root = Path(d)
        shutil.copytree(EXAMPLES / "hello-bz2", root / "proj")
        yield root


# --- generated values ---------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.sampled_from(["3.10", "proj", "zlib", "x86_64", "manylinux_2_31", "*", "", "..", "/"]),
    st.integers(min_value=1, max_value=100_000).map(lambda n: "x" * n),  # huge strings
    st.sampled_from([256, 300, 4097, 70_000]).map(lambda n: "x" * n),  # past NAME_MAX, PATH_MAX
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data


@st.composite
def structural(draw: st.DrawFn) -> str:
    """A valid recipe with a few values replaced, keys added or removed, dumped to YAML."""
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "add", "delete", "alike"]))
        target = data
        for part in path:
            target = target[part]
        if action == "add" and isinstance(target, dict):
            target[draw(st.one_of(_text, st.sampled_from(list(BASES[1]))))] = draw(_values)
        elif action == "alike" and isinstance(target, str) and path and path[-1] != "project":
            # Same type, other content: unicode names, env values, commands (often valid).
            data = _set(data, path, draw(_printable))
        elif action == "delete" and path:
            container = data
            for part in path[:-1]:
                container = container[part]
            del container[path[-1]]
        else:
            data = _set(data, path, draw(_values))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, allow_unicode=draw(st.booleans()), sort_keys=False)


@st.composite
def textual(draw: st.DrawFn) -> bytes:
    """YAML-level damage a dump cannot produce: anchors, tags, nesting, raw bytes."""
    text = yaml.safe_dump(draw(st.sampled_from(BASES)), sort_keys=False)
    lines = text.splitlines()
    kind = draw(
        st.sampled_from(
            ["anchors", "tag", "nest", "bytes", "insert", "flow", "merge", "truncate", "bigint"]
        )
    )
    at = draw(st.integers(0, len(lines)))
    if kind == "anchors":
        depth = draw(st.integers(1, 12))
        width = draw(st.integers(1, 12))
        extra = ["a0: &a0 [x]"] + [
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)
        ]
        lines[at:at] = extra
    elif kind == "tag":
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object:os.system",
                    "!!python/name:os.system",
                    "!foo",
                    "!!binary",
                    "!!set",
                    "!!omap",
                    "!!timestamp",
                    "!!str",
                    "!!int",
                    "!<tag:x>",
                ]
            )
        )
        lines = [
            re.sub(r": ", f": {tag} ", line, count=1) if i == at else line
            for i, line in enumerate(lines)
        ]
    elif kind == "nest":
        n = draw(st.integers(1, 6000))
        lines.append("environment: " + "[" * n + "]" * n)
    elif kind == "flow":
        n = draw(st.integers(1, 3000))
        lines.append("test: " + "{a: " * n + "1" + "}" * n)
    elif kind == "merge":
        lines[at:at] = ["base: &b {CFLAGS: -O2}", "environment: {<<: *b}"]
    elif kind == "bigint":  # beyond int()'s digit limit
        lines.insert(at, f"name: {'9' * draw(st.integers(4000, 5000))}")
    elif kind == "insert":
        lines.insert(at, draw(_text))
    elif kind == "truncate":
        lines = lines[:at]
    raw = "\n".join(lines).encode()
    if kind == "bytes":
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(st.binary(min_size=1, max_size=8)) + raw[pos:]
    return raw


# --- the property -------------------------------------------------------------------------


def _check_one(workdir: Path, content: bytes, outcomes: dict[str, int]) -> None:
    recipe = workdir / "orch.yaml"
    recipe.write_bytes(content)
    try:
        result = load_recipe(recipe)
    except ConfigError as exc:
        first = str(exc).splitlines()[0]
        assert LOCATED.match(first), f"error without file:line:column: {first!r}"
        outcomes["located errors"] += 1
        return
    assert isinstance(result, Recipe)
    outcomes["valid recipes"] += 1


def test_fuzzed_recipes_give_a_recipe_or_a_located_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = {"valid recipes": 0, "located errors": 0}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.one_of(structural().map(str.encode), textual()))
    def run(content: bytes) -> None:
        _check_one(workdir, content, outcomes)

    run()
    total = sum(outcomes.values())
    with capsys.disabled():
        print(f"\nfuzzed recipes: {total} ({', '.join(f'{v} {k}' for k, v in outcomes.items())})")
    assert total >= 1000
    assert outcomes["located errors"] > 0 and outcomes["valid recipes"] > 0


@pytest.mark.parametrize("index", range(len(BASES)))
def test_fuzz_starts_from_valid_recipes(workdir: Path, index: int) -> None:
    recipe = workdir / f"base-{index}.yaml"
    recipe.write_text(yaml.safe_dump(BASES[index], sort_keys=False))
    assert isinstance(load_recipe(recipe), Recipe)


# --- named hostile files ------------------------------------------------------------------

BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)).join(
    ["schema: 1\nproject: proj\nl0: &l0 [x, x, x, x, x, x, x, x, x]\n", ""]
)

HOSTILE: dict[str, tuple[bytes, str]] = {
    "nul": (b"schema: 1\nproject: proj\x00\n", r":2:14: .*binary"),
    "bell": (b"schema: 1\nproject: pr\x07oj\n", r":2:12: control character U\+0007"),
    "escape-sequence": (b"schema: 1\nproject: \x1b[31mproj\n", r":2:10: control character"),
    "latin1": (b"schema: 1\nname: caf\xe9\nproject: proj\n", r":2:10: not UTF-8"),
    "binary": (bytes(range(256)) * 4, r":1:1: .*binary"),
    "deep-lists": (
        b"schema: 1\nproject: proj\ntest: " + b"[" * 5000 + b"]" * 5000,
        r":3:\d+: .*nest",
    ),
    "deep-maps": (
        b"schema: 1\nproject: proj\ntest: " + b"{a: " * 5000 + b"1" + b"}" * 5000,
        r"nested",
    ),
    "deep-blocks": (
        b"schema: 1\nproject: proj\ntest:\n" + b"- " * 3000 + b"x\n",
        r":4:\d+: .*nested",
    ),
    "empty": (b"", r":1:1: the file is empty"),
    "only-comment": (b"# nothing here\n", r":1:1: the file is empty"),
    "python-tag": (
        b"schema: 1\nproject: !!python/object:os.system proj\n",
        r":2:10: the YAML tag '!!python/object:os.system'",
    ),
    "tag-on-mapping": (
        b"schema: 1\nproject: proj\ntest: !!python/object:x {imports: [a]}\n",
        r":3:7: the YAML tag",
    ),
    "billion-laughs": (BOMB.encode(), r"expands to more than"),
    "alias-cycle": (
        b"schema: 1\nproject: proj\ntest: &t {imports: *t}\n",
        r"nested more than|expected",
    ),
    "huge-file": (
        b"schema: 1\nproject: proj\nname: " + b"x" * (2 << 20) + b"\n",
        r":1:1: the file is \d+ bytes",
    ),
    "huge-value": (
        b"schema: 1\nproject: proj\nname: " + b"x" * 200_000 + b"\n",
        r":3:7: a value of 200000",
    ),
    "huge-int": (
        b"schema: 1\nproject: proj\nname: " + b"9" * 5000 + b"\n",
        r":3:7: .*not a valid value",
    ),
    "bad-date": (b"schema: 1\nproject: proj\nname: 2024-13-45\n", r":3:7: .*not a valid value"),
    "two-documents": (b"schema: 1\nproject: proj\n---\nschema: 1\n", r":3:1: YAML syntax error"),
    "escaped-control": (
        b'schema: 1\nproject: proj\nenvironment: {"\\e[2J": x}\n',
        r":3:15: control character U\+001B",
    ),
    "long-use": (
        b"schema: 1\nproject: proj\ndependencies:\n  - use: " + b"x" * 300 + b"\n",
        r":4:10: dependencies\[0\]\.use: no library recipe",
    ),
    "long-project": (b"schema: 1\nproject: " + b"x" * 300 + b"\n", r":2:10: project: "),
    "blank-key": (  # a key that prints as nothing is quoted, never an empty field name
        b"schema: 1\nproject: proj\n' ': 1\n",
        r":3:1: \[' '\]: unknown key ' '",
    ),
    "merge-key": (
        b"schema: 1\nproject: proj\nenvironment: {<<: {A: b}}\n",
        r":3:15: mapping keys must be plain",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_recipe_gives_a_located_error(workdir: Path, name: str) -> None:
    content, expected = HOSTILE[name]
    recipe = workdir / f"{name}.yaml"
    recipe.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert message.startswith(f"{recipe}:"), message
    assert re.search(expected, message), message


@pytest.mark.parametrize("name", ["nul", "latin1", "deep-lists", "billion-laughs", "python-tag"])
def test_orch_plan_exits_2_without_a_traceback(workdir: Path, name: str) -> None:
    recipe = workdir / f"plan-{name}.yaml"
    recipe.write_bytes(HOSTILE[name][0])
    result = orch("plan", "-f", str(recipe), timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{recipe}:" in (result.stdout + result.stderr).replace("\n", "")


@pytest.mark.parametrize(
    "name", ["nul", "latin1", "deep-maps", "billion-laughs", "python-tag", "empty"]
)
def test_hostile_library_recipe_gives_a_located_error(workdir: Path, name: str) -> None:
    """`use: NAME` reads recipes/NAME.yaml beside the recipe: the same reader, the same care."""
    case = workdir / f"lib-{name}"
    (case / "recipes").mkdir(parents=True)
    library = case / "recipes" / "evil.yaml"
    library.write_bytes(HOSTILE[name][0])
    recipe = case / "orch.yaml"
    recipe.write_text("schema: 1\nproject: ../proj\ndependencies:\n  - use: evil\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    assert str(info.value).startswith(f"{library.resolve()}:"), str(info.value)
