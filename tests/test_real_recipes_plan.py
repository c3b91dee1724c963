"""The real projects' recipes plan every Python the local images offer that the project
allows (no Docker, no network): each recipe planned against an sdist that carries the
real one's facts (tests/support/real_pythons.py), cp314/cp315 on the forky family
(manylinux_2_39), the rest and free-threaded cp313t on manylinux_2_31, and every other
combination excluded with a reason that says why."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from orchestrator.images import sources
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from orchestrator.util.hashing import sha256_file
from tests.conftest import EXAMPLES
from tests.support.real_pythons import EXPECTED, FACTS, SdistFacts

FT = "Programming Language :: Python :: Free Threading :: 2 - Beta"
NOT_SERVED = ("python3.14", "python3.15")  # the mirror's answer on this host, Nov 2026


def _mirror_says(suite: str, package: str) -> sources.SourceCheck:
    """The package mirror as it answers here: no 3.14/3.15 source (so those come from
    forky's binaries, manylinux_2_39); a served one would also be compiled for 2_31."""
    state = sources.UNSERVED if package in NOT_SERVED else sources.SERVED
    return sources.SourceCheck(suite, package, state, "http://127.0.0.1:9/debian", "1", status=404)


def _plan(recipe: Path):  # type: ignore[no-untyped-def]
    return make_plan(load_recipe(recipe), host_arch="x86_64", sources=_mirror_says)


def _sdist(dest: Path, filename: str, facts: SdistFacts) -> Path:
    top = filename.removesuffix(".tar.gz")
    classifiers = f"Classifier: {FT}\n" if facts.classifier else ""
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: x\nVersion: 1\n{classifiers}"
        f"Requires-Python: {facts.requires_python}\n\nbody\n",
        "setup.py": "",
        **dict(facts.gil_sources),
    }
    path = dest / filename
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _recipe_with(name: str, tmp_path: Path) -> Path:
    """The example's recipe, its sdist pin pointed at a stand-in sdist with the same facts."""
    dest = tmp_path / name
    shutil.copytree(EXAMPLES / "real" / name, dest)
    recipe = dest / "orch.yaml"
    text = recipe.read_text()
    found = re.search(r"path: (\S+\.tar\.gz)\n  sha256: ([0-9a-f]{64})", text)
    assert found, "the recipe pins its sdist"
    sdist = _sdist(dest, found.group(1), FACTS[name])
    recipe.write_text(text.replace(found.group(2), sha256_file(sdist)))
    return recipe


@pytest.mark.parametrize("name", sorted(FACTS))
def test_real_recipe_plans_every_allowed_python_on_its_family(name: str, tmp_path: Path) -> None:
    plan = _plan(_recipe_with(name, tmp_path))
    assert {j.id for j in plan.jobs} == EXPECTED[name]
    for job in plan.jobs:
        assert (job.policy == "manylinux_2_39") == job.id.startswith(("cp314-", "cp315-"))
        assert job.image_source == "local" and job.emulated == (job.arch == "aarch64")
        assert job.python_tag.endswith("t") == job.id.startswith("cp313t-")
    # nothing left out without a reason that names the image family or requires-python
    for ex in plan.excluded:
        assert "built in the local manylinux_2" in ex.reason or "requires-python" in ex.reason, ex
        if ex.id.startswith(("cp314-manylinux_2_31", "cp315-manylinux_2_31")):
            assert "answered 404" in ex.reason, ex
    assert plan.warnings == ()


def test_an_undeclared_module_keeps_3_13t_out_with_the_file_named(tmp_path: Path) -> None:
    """The same recipe, one of Pillow's modules without Py_MOD_GIL_NOT_USED: no cp313t,
    and the exclusion and warning name the module."""
    recipe = _recipe_with("pillow", tmp_path)
    sdist = next(recipe.parent.glob("*.tar.gz"))
    facts = FACTS["pillow"]
    bare = ("src/_imagingmath.c", "PyMODINIT_FUNC PyInit__imagingmath(void) {}\n")
    old = sha256_file(sdist)
    _sdist(
        recipe.parent,
        sdist.name,
        SdistFacts(**{**vars(facts), "gil_sources": (*facts.gil_sources, bare)}),
    )
    recipe.write_text(recipe.read_text().replace(old, sha256_file(sdist)))
    plan = _plan(recipe)
    assert {j.id for j in plan.jobs} == {
        i for i in EXPECTED["pillow"] if not i.startswith("cp313t")
    }
    reasons = [e.reason for e in plan.excluded if e.id == "cp313t-manylinux_2_31_x86_64"]
    assert reasons and "src/_imagingmath.c" in reasons[0], reasons
    (warning,) = plan.warnings
    assert "3.13t" in warning and "src/_imagingmath.c" in warning
