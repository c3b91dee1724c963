"""The matrix: job ids, image choice, exclusions with reasons, selectors, sharding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.plan import catalog
from orchestrator.plan.jobs import make_plan, python_tag
from orchestrator.recipe import load_recipe


def recipe(tmp_path: Path, body: str) -> Path:
    (tmp_path / "p").mkdir(exist_ok=True)
    (tmp_path / "p" / "setup.py").write_text("")
    f = tmp_path / "orch.yaml"
    f.write_text("schema: 1\nproject: p\n" + body)
    return f


def test_catalog_knows_policy_arch_pairs() -> None:
    cat = catalog.load()
    assert cat.canonical("manylinux2014") == "manylinux_2_17"
    assert "aarch64" not in cat.archs_for("manylinux_2_5")
    assert set(cat.archs_for("manylinux_2_17")) == {"x86_64", "i686", "aarch64", "ppc64le", "s390x"}
    assert "armv7l" in cat.archs_for("musllinux_1_2")
    with pytest.raises(KeyError):
        cat.choose("manylinux_2_5", "aarch64")


def test_python_tags() -> None:
    assert python_tag("3.11") == "cp311-cp311"
    assert python_tag("3.7") == "cp37-cp37m"


def test_local_jobs_and_exclusions(tmp_path: Path) -> None:
    f = recipe(tmp_path, "python: ['3.9', '3.11']\narchs: [x86_64, aarch64]\n")
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    ids = [j.id for j in plan.jobs]
    assert ids == [
        "cp39-manylinux_2_31_x86_64",
        "cp311-manylinux_2_31_x86_64",
        "cp39-manylinux_2_31_aarch64",
    ]
    # the emulated aarch64 image ships only Debian's 3.9: excluded, with the reason
    (ex,) = plan.excluded
    assert ex.id == "cp311-manylinux_2_31_aarch64" and "no CPython 3.11" in ex.reason
    by_id = {j.id: j for j in plan.jobs}
    assert by_id["cp39-manylinux_2_31_aarch64"].emulated
    assert not by_id["cp39-manylinux_2_31_x86_64"].emulated
    assert by_id["cp39-manylinux_2_31_x86_64"].image.startswith("orch-local/manylinux_2_31_x86_64:")
    assert by_id["cp39-manylinux_2_31_x86_64"].runtime_image.startswith(  # type: ignore[union-attr]
        "orch-local/manylinux_2_31_x86_64-runtime:"
    )


def test_pypa_policies_and_impossible_pairs_excluded(tmp_path: Path) -> None:
    f = recipe(
        tmp_path,
        "python: ['3.9']\nplatforms: [manylinux1, manylinux2014]\narchs: [x86_64, aarch64]\n",
    )
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    ids = {j.id for j in plan.jobs}
    assert ids == {
        "cp39-manylinux_2_5_x86_64",
        "cp39-manylinux_2_17_x86_64",
        "cp39-manylinux_2_17_aarch64",
    }
    assert {e.id: e.reason for e in plan.excluded}[
        "cp39-manylinux_2_5_aarch64"
    ] == "manylinux1 has no aarch64 image"
    job = next(j for j in plan.jobs if j.id == "cp39-manylinux_2_17_aarch64")
    assert job.image == "quay.io/pypa/manylinux2014_aarch64" and job.image_source == "pypa"


def test_build_skip_selectors_and_only(tmp_path: Path) -> None:
    f = recipe(tmp_path, "python: ['3.9', '3.11']\nskip: ['cp39-*']\n")
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    assert [j.id for j in plan.jobs] == ["cp311-manylinux_2_31_x86_64"]
    assert {e.id: e.reason for e in plan.excluded} == {
        "cp39-manylinux_2_31_x86_64": "skipped by skip: cp39-*"
    }
    with pytest.raises(ConfigError, match="matches no job"):
        plan.select(["cp27-*"])


def test_plan_json_roundtrip(tmp_path: Path) -> None:
    f = recipe(tmp_path, "python: ['3.9']\n")
    data = json.loads(make_plan(load_recipe(f), host_arch="x86_64").dumps())
    assert data["jobs"][0]["id"] == "cp39-manylinux_2_31_x86_64"
    assert data["jobs"][0]["group"].endswith("|x86_64")


def test_shards_cover_every_job_once_and_keep_groups(tmp_path: Path) -> None:
    f = recipe(tmp_path, "python: ['3.9', '3.11']\narchs: [x86_64, i686, aarch64, armv7l]\n")
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    for n in (1, 2, 3, 8):
        shards = [plan.shard(k, n).jobs for k in range(1, n + 1)]
        flat = [j.id for s in shards for j in s]
        assert sorted(flat) == sorted(j.id for j in plan.jobs)
        for s in shards:
            for g in {j.group for j in s}:  # a group never straddles two shards
                assert all(j.group != g for other in shards if other is not s for j in other)
    with pytest.raises(ConfigError):
        plan.shard(3, 2)
