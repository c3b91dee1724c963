"""The matrix: job ids, image choice, exclusions with reasons, selectors, sharding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.images.sources import SourceCheck
from orchestrator.plan import catalog
from orchestrator.plan.jobs import make_plan, python_tag
from orchestrator.recipe import load_recipe
from tests.support.run import ROOT


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
    assert python_tag("3.13t") == "cp313-cp313t"


def test_local_jobs_and_exclusions(tmp_path: Path) -> None:
    f = recipe(tmp_path, "python: ['3.9', '3.11', '3.12']\narchs: [x86_64, aarch64]\n")
    plan = make_plan(load_recipe(f), host_arch="x86_64")
    ids = [j.id for j in plan.jobs]
    assert ids == [
        "cp39-manylinux_2_31_x86_64",
        "cp311-manylinux_2_31_x86_64",
        "cp39-manylinux_2_31_aarch64",
        "cp311-manylinux_2_31_aarch64",
    ]
    # no Debian suite serves 3.12's source: excluded, with the reason and what there is
    assert [e.id for e in plan.excluded] == [
        "cp312-manylinux_2_31_x86_64",
        "cp312-manylinux_2_31_aarch64",
    ]
    assert "no CPython 3.12 (has 3.9, 3.11, 3.13, 3.13t" in plan.excluded[0].reason
    by_id = {j.id: j for j in plan.jobs}
    assert by_id["cp39-manylinux_2_31_aarch64"].emulated
    assert not by_id["cp39-manylinux_2_31_x86_64"].emulated
    assert by_id["cp39-manylinux_2_31_x86_64"].image.startswith("orch-local/manylinux_2_31_x86_64:")
    assert by_id["cp39-manylinux_2_31_x86_64"].runtime_image.startswith(  # type: ignore[union-attr]
        "orch-local/manylinux_2_31_x86_64-runtime:"
    )


def test_every_reachable_cpython_on_the_local_image(tmp_path: Path) -> None:
    """cibuildwheel's ids and /opt/python layout, free-threaded builds included; one image
    per architecture and family carries exactly the Pythons its jobs use. 3.14 and 3.15 are
    Debian forky's own where the mirror serves no forky source (as here, late 2026): the
    manylinux_2_39 family."""
    wanted = ["3.9", "3.11", "3.13", "3.13t", "3.14", "3.15"]
    f = recipe(
        tmp_path,
        f"python: {wanted}\narchs: [x86_64]\nplatforms: [manylinux_2_31, manylinux_2_39]\n",
    )
    plan = make_plan(load_recipe(f), host_arch="x86_64", sources=_no_forky_sources)
    assert [j.id.split("-")[0] for j in plan.jobs] == [
        "cp39", "cp311", "cp313", "cp313t", "cp314", "cp315"
    ]  # fmt: skip
    # every other combination is the other family's, and says so
    assert plan.excluded and all("image instead" in e.reason for e in plan.excluded)
    ft = next(j for j in plan.jobs if j.id == "cp313t-manylinux_2_31_x86_64")
    assert ft.python_tag == "cp313-cp313t" and ft.python == "3.13t"
    assert len({j.image for j in plan.jobs}) == 2
    assert plan.jobs[0].image_pythons == tuple(wanted[:4])
    assert plan.jobs[-1].image_pythons == ("3.14", "3.15")
    # the CLI's table lists them too
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "plan", "-f", str(f), "--json"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = [j["id"].split("-")[0] for j in json.loads(proc.stdout)["jobs"]]
    assert {"cp39", "cp311", "cp313", "cp313t", "cp314", "cp315"} <= set(listed)


def _no_forky_sources(suite: str, package: str) -> SourceCheck:
    """This machine's mirror, as probed in Nov 2026 (tests/test_source_probe.py probes)."""
    state = "unserved" if suite == "forky" else "served"
    return SourceCheck(suite, package, state, "http://mirror.invalid/debian", status=404)


def test_local_image_fits_the_selected_jobs(tmp_path: Path) -> None:
    """--only and build/skip leave an image with just the Pythons still needed, so no
    interpreter is compiled for a job that does not run."""
    f = recipe(tmp_path, "python: ['3.9', '3.13', '3.14t']\narchs: [x86_64, aarch64]\n")
    full = make_plan(load_recipe(f), host_arch="x86_64")
    only = full.select(["cp39-*"])
    assert {j.image_pythons for j in only.jobs} == {("3.9",)}
    from orchestrator.images.local import local_image_ref

    assert only.jobs[0].image == local_image_ref("x86_64", "build", pythons=("3.9",))
    assert only.jobs[0].image != full.jobs[0].image
    skip = recipe(tmp_path, "python: ['3.9', '3.13', '3.14t']\nskip: ['cp314t-*']\n")
    planned = make_plan(load_recipe(skip), host_arch="x86_64")
    assert {j.image_pythons for j in planned.jobs} == {("3.9", "3.13")}


def test_free_threaded_versions_validate(tmp_path: Path) -> None:
    f = recipe(tmp_path, "python: ['3.13x']\n")
    with pytest.raises(ConfigError, match=r"3\.13x.*3\.13t"):
        load_recipe(f)


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
