"""docs/recipe.md and the recipe JSON Schema say the same thing: every schema field has a
section (type, example, the error when wrong), and every section names a schema field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.audit import CHECKS
from orchestrator.recipe import schema
from tests.support.run import ROOT

DOC = ROOT / "docs" / "recipe.md"


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        target = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_fields(node: Mapping[str, Any] | None = None, prefix: str = "") -> Iterator[str]:
    """'repair.plat', 'dependencies[].source.sha256', ...: every property, depth first."""
    node = _resolve(node if node is not None else schema())
    for branch in node.get("oneOf", []):
        yield from schema_fields(branch, prefix)
    if isinstance(node.get("items"), Mapping):
        yield from schema_fields(node["items"], prefix + "[]")
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        yield from schema_fields(sub, path)


def doc_sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### `([^`]+)`\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_schema_field_is_documented_and_nothing_else() -> None:
    fields, documented = set(schema_fields()), set(doc_sections())
    assert fields - documented == set(), "schema fields without a section in docs/recipe.md"
    assert documented - fields == set(), "sections of docs/recipe.md the schema does not have"
    assert len(fields) > 50


def test_every_section_has_type_example_and_error() -> None:
    for name, body in doc_sections().items():
        for word in ("- type:", "- example:", "- when wrong:"):
            assert word in body, f"{name}: no '{word}' line"


def test_downgrade_checks_are_the_audit_checks() -> None:
    check = schema()["properties"]["audit"]["properties"]["downgrade"]["items"]["properties"]
    assert tuple(check["check"]["enum"]) == CHECKS
    section = doc_sections()["audit.downgrade[].check"]
    assert all(f"`{c}`" in section for c in CHECKS)
