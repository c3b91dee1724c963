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

from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from orchestrator.util.hashing import sha256_file
from tests.conftest import EXAMPLES
from tests.support.real_pythons import EXPECTED, FACTS, SdistFacts

FT = "Programming Language :: Python :: Free Threading :: 2 - Beta"


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
    plan = make_plan(load_recipe(_recipe_with(name, tmp_path)), host_arch="x86_64")
    assert {j.id for j in plan.jobs} == EXPECTED[name]
    for job in plan.jobs:
        assert (job.policy == "manylinux_2_39") == job.id.startswith(("cp314-", "cp315-"))
        assert job.image_source == "local" and job.emulated == (job.arch == "aarch64")
        assert job.python_tag.endswith("t") == job.id.startswith("cp313t-")
    # nothing left out without a reason that names the image family or requires-python
    for ex in plan.excluded:
        assert "built in the local manylinux_2" in ex.reason or "requires-python" in ex.reason, ex
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
    plan = make_plan(load_recipe(recipe), host_arch="x86_64")
    assert {j.id for j in plan.jobs} == {
        i for i in EXPECTED["pillow"] if not i.startswith("cp313t")
    }
    reasons = [e.reason for e in plan.excluded if e.id == "cp313t-manylinux_2_31_x86_64"]
    assert reasons and "src/_imagingmath.c" in reasons[0], reasons
    (warning,) = plan.warnings
    assert "3.13t" in warning and "src/_imagingmath.c" in warning
