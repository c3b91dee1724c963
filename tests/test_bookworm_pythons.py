"""Every reachable CPython on the bookworm images (manylinux_2_36, the only local family of
ppc64le and s390x): cp39 compiled from bullseye's source and the free-threaded cp313t are
planned there like any other interpreter, and adding cp39 left every existing tag alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.images import definition, local
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from tests.support.run import ROOT

ALL = ("3.9", "3.11", "3.13", "3.13t")
ARCHS = ("x86_64", "ppc64le", "s390x")
CP39_LINE = "  cp39-cp39: {suite: bullseye, package: python3.9}\n"


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\nrequires-python = ">=3.9"\nclassifiers = '
        '["Programming Language :: Python :: Free Threading :: 2 - Beta"]\n'
    )
    recipe = tmp_path / "orch.yaml"
    recipe.write_text(
        "schema: 1\nproject: .\npython: "
        + json.dumps(list(ALL))
        + "\nplatforms: [manylinux_2_36]\narchs: [ppc64le, s390x]\n"
    )
    return recipe


def test_bookworm_offers_cp39_from_bullseyes_source() -> None:
    defn = definition.load_suite("bookworm")
    assert [definition.version_of(t) for t in defn.available()][:4] == list(ALL)
    cp39 = defn.source_pythons["cp39-cp39"]
    assert (cp39.suite, cp39.package, cp39.free_threaded) == ("bullseye", "python3.9", False)
    # bullseye has its own python3.9 binary: bookworm alone compiles it, so the host's
    # interpreter that byte-compiles an emulated cp39 is bookworm's x86_64 one
    assert local._oldest_suite_with(cp39) is defn


@pytest.mark.parametrize("arch", ["ppc64le", "s390x"])
def test_plan_lists_cp39_and_cp313t_on_the_bookworm_only_archs(tmp_path: Path, arch: str) -> None:
    plan = make_plan(load_recipe(_project(tmp_path)), host_arch="x86_64")
    jobs = {j.id: j for j in plan.jobs if j.arch == arch}
    assert sorted(jobs) == sorted(
        f"cp{v.replace('.', '')}-manylinux_2_36_{arch}" for v in ("3.9", "3.11", "3.13", "3.13t")
    )
    assert not plan.excluded
    assert jobs[f"cp39-manylinux_2_36_{arch}"].python_tag == "cp39-cp39"
    assert jobs[f"cp313t-manylinux_2_36_{arch}"].python_tag == "cp313-cp313t"
    # one image per group, carrying every interpreter its jobs use (Debian's cp311 included)
    image = definition.plan_image(arch, "bookworm", ALL)
    assert {j.image for j in jobs.values()} == {image.ref("build")}
    assert [i.tag for i in image.interpreters] == ["cp39-cp39", "cp313-cp313", "cp313-cp313t"]


def test_cli_plan_json_names_the_new_jobs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "plan", "-f", str(_project(tmp_path)), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    ids = {j["id"] for j in json.loads(proc.stdout)["jobs"]}
    assert {"cp39-manylinux_2_36_ppc64le", "cp313t-manylinux_2_36_s390x"} <= ids


def _refs() -> dict[str, str]:
    """Every tag an image without cp39 has (both variants), the builders' and the
    interpreters' spec digests, on the archs whose images exist on hosts today."""
    refs: dict[str, str] = {}
    for arch in ARCHS:
        defn = definition.load_suite("bookworm")
        base = definition.plan_base(defn, definition.archs.get(arch))
        refs[f"{arch} builder"] = definition.plan_builder(defn, base.arch).ref
        for pythons in (None, (), ("3.13",), ("3.13t",), ("3.13", "3.13t")):
            if pythons is None and arch == "x86_64":
                continue  # native default: the recipe's default Pythons, 3.9 now among them
            image = definition.plan_image(arch, "bookworm", pythons)
            for variant in definition.VARIANTS:
                refs[f"{arch} {pythons} {variant}"] = image.ref(variant)
            for interp in image.interpreters:
                refs[f"{arch} {interp.tag}"] = interp.spec_digest
    return refs


def test_adding_cp39_changed_no_existing_tag(definitions_copy: Path) -> None:
    with_cp39 = _refs()
    path = definitions_copy / "bookworm.yaml"
    text = path.read_text()
    assert CP39_LINE in text
    path.write_text(text.replace(CP39_LINE, ""))
    assert "cp39-cp39" not in definition.load_suite("bookworm").source_pythons
    assert _refs() == with_cp39
