"""`supports` on a dependency: the plan excludes the platforms it does not build on, with
the reason and where it is written, and so rules out its dependents' jobs too."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe

SHA = "0" * 64


def recipe(tmp_path: Path, deps: str, top: str = "") -> Path:
    (tmp_path / "p").mkdir(exist_ok=True)
    (tmp_path / "p" / "setup.py").write_text("")
    f = tmp_path / "orch.yaml"
    f.write_text("schema: 1\nproject: p\npython: ['3.9']\n" + top + "dependencies:\n" + deps)
    return f


def inline(name: str, extra: str = "", requires: str = "") -> str:
    return (
        f"  - name: {name}\n    version: '1'\n"
        f"    source: {{url: 'https://example.invalid/{name}.tar.gz', sha256: '{SHA}'}}\n"
        "    build: {system: cmake}\n" + requires + extra
    )


def test_unsupported_arch_is_an_exclusion_with_its_reason(tmp_path: Path) -> None:
    rule = "    supports: [{not: '*_aarch64', reason: 'no aarch64 port yet'}]\n"
    f = recipe(tmp_path, inline("fast", rule), "archs: [x86_64, aarch64]\n")
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    assert [j.id for j in plan.jobs] == ["cp39-manylinux_2_31_x86_64"]
    (gone,) = plan.excluded
    assert gone.id == "cp39-manylinux_2_31_aarch64"
    assert gone.kind == "unavailable"
    assert "dependency fast does not build for manylinux_2_31_aarch64: no aarch64 port" in (
        gone.reason
    )
    assert "orch.yaml:" in gone.reason  # where the rule is written


def test_a_dependent_is_ruled_out_with_its_requirement(tmp_path: Path) -> None:
    rule = "    supports: [{not: [manylinux1_*, manylinux2010_*], reason: 'needs GCC 10'}]\n"
    deps = inline("absl", rule) + inline("re", requires="    requires: [absl]\n")
    top = "platforms: [manylinux2010, manylinux2014]\n"
    plan = make_plan(load_recipe(recipe(tmp_path, deps, top)), host_arch="x86_64")
    assert [j.id for j in plan.jobs] == ["cp39-manylinux_2_17_x86_64"]
    assert [e.id for e in plan.excluded] == ["cp39-manylinux_2_12_x86_64"]
    assert "needs GCC 10" in plan.excluded[0].reason  # the legacy alias matched


def test_a_rule_without_a_reason_is_a_config_error(tmp_path: Path) -> None:
    f = recipe(tmp_path, inline("x", "    supports: [{not: '*_s390x'}]\n"))
    with pytest.raises(ConfigError) as err:
        load_recipe(f)
    assert "supports[0]" in str(err.value) and "reason" in str(err.value)


def test_library_abseil_rules_out_old_compilers(tmp_path: Path) -> None:
    f = recipe(tmp_path, "  - use: abseil-cpp\n  - use: re2\n", "platforms: [manylinux2010]\n")
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    assert not plan.jobs
    assert "abseil-cpp does not build for manylinux_2_12_x86_64: abseil 20260526 needs GCC 10" in (
        plan.excluded[0].reason
    )
