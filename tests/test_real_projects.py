"""Real projects from the package index, built from their sdists as a maintainer would:
`examples/real/<name>/orch.yaml` (written from orch's docs), the sdist fetched with
`pip download --no-binary` and checked by orch against the sha256 the recipe pins, the
static libraries from a local mirror of their exact upstream tarballs.

Each wheel must build for every image Python the project's requires-python allows, be
repaired (tags as wide as auditwheel proves), audited clean, and verified in the runtime
image and a stock Debian image with the system Python; the C extension must be present
(the recipes' smoke tests fail on a pure-Python fallback).

PyYAML cp311 on x86_64 runs every time (and, for the build without libyaml, cp311 and
cp313 as before: a fresh CI machine would otherwise compile cp313t and build the forky
image); every project, every Python its recipe lists (3.9, 3.11, 3.13, 3.13t on
manylinux_2_31, 3.14 and 3.15 on the forky family manylinux_2_39, where the project
allows them: tests/support/real_pythons.py) and aarch64 with ORCH_TEST_REAL_PROJECTS=1.
A free-threaded wheel's verification reports whether the GIL stayed off after importing
the project's modules; the test prints it and requires it off (each project declares
Py_MOD_GIL_NOT_USED).
A library whose upstream tarball Debian does not ship byte-identical (zlib, libpng,
freetype, openjpeg for Pillow) is built from its stand-in (tests/support/standins.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.container import engine
from orchestrator.images import stock
from orchestrator.recipe.load import load_dependency_file
from tests.conftest import EXAMPLES, ROOT, orch
from tests.support.real_pythons import EXPECTED
from tests.support.standins import needing_stand_ins, with_stand_ins

pytestmark = pytest.mark.docker
ALL = os.environ.get("ORCH_TEST_REAL_PROJECTS") == "1"
# The opt-in run plans as a user's orch does: it asks the package mirror which CPython
# sources it serves (none for 3.14/3.15 here: those come from the forky family). The
# suite's default (ORCH_SOURCE_PROBE=0) would plan them for manylinux_2_31 too.
PROBE = {"ORCH_SOURCE_PROBE": "1"} if ALL else {}


IMAGING = ("zlib", "libjpeg-turbo", "libpng", "libtiff", "libwebp", "freetype", "lcms2", "openjpeg")


@dataclass(frozen=True)
class Project:
    name: str
    libraries: tuple[str, ...]  # recipes whose sources the mirror must hold
    extension: str  # regex of the compiled module inside the wheel
    smoke: str  # a line the recipe's test command prints when the extension works
    bundled_static: tuple[str, ...]  # archive names that must not be grafted as .so
    linked: str  # regex: the link line takes the prefix's library, not a bundled copy


PROJECTS = {
    "pyyaml": Project(
        "pyyaml",
        ("libyaml",),
        r"^yaml/_yaml\.cpython-.*\.so$",
        "libyaml 0.2.5 ok",
        ("libyaml",),
        "-lyaml",
    ),
    "lz4": Project(
        "lz4",
        ("lz4",),
        r"^lz4/frame/_frame\.cpython-.*\.so$",
        "python-lz4 4.4.5 ok",
        ("lz4",),
        r"-L/opt/orch/deps/lib (-L\S+ )*-llz4",
    ),
    "cffi": Project(
        "cffi", ("libffi",), r"^_cffi_backend\.cpython-.*\.so$", "backend", ("libffi",), "-lffi"
    ),
    "pillow": Project(
        "pillow",
        IMAGING,
        r"^PIL/_imaging\.cpython-.*\.so$",
        "imaging ok:",
        (
            "libjpeg",
            "libtiff",
            "libwebp",
            "libsharpyuv",
            "libfreetype",
            "liblcms2",
            "libopenjp2",
            "libpng",
        ),
        r"-ltiff -ljpeg -lopenjp2 -lz .*-lwebp -lsharpyuv -lpng16 -lz -lpthread -lm",
    ),
}


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache per test (every library cold), or ORCH_TEST_REAL_CACHE: one kept
    across runs, to build a project again after a failure without its libraries."""
    kept = os.environ.get("ORCH_TEST_REAL_CACHE")
    d = Path(kept) if kept else tmp_path / "cache"
    monkeypatch.setenv("ORCH_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def library_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The libraries' upstream tarballs, as Debian ships them byte-identical."""
    given = os.environ.get("ORCH_TEST_LIBRARY_MIRROR")
    if given:
        return Path(given)
    mirror = tmp_path_factory.mktemp("mirror")
    # the default run builds PyYAML only: fetch the other projects' sources when they run
    runs = PROJECTS.values() if ALL else [PROJECTS["pyyaml"]]
    libs = sorted({lib for p in runs for lib in p.libraries})
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "mirror-from-debian.sh"), str(mirror), *libs],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return mirror


def _example(name: str, tmp_path: Path, mirror: Path) -> Path:
    """A copy of the example with its pinned sdist fetched from the package index; each
    library whose upstream tarball the mirror lacks is built from its stand-in."""
    dest = tmp_path / name
    shutil.copytree(EXAMPLES / "real" / name, dest)
    recipe = dest / "orch.yaml"
    libs = [
        load_dependency_file(ROOT / "recipes" / f"{lib}.yaml") for lib in PROJECTS[name].libraries
    ]
    recipe.write_text(with_stand_ins(recipe.read_text(), needing_stand_ins(mirror, libs)))
    text = recipe.read_text()
    sdist = re.search(r"path: (\S+\.tar\.gz)", text)
    assert sdist, "the recipe names its sdist"
    dist, version = sdist.group(1).removesuffix(".tar.gz").rsplit("-", 1)
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    proc = subprocess.run(
        [*pip, "--no-binary", ":all:", "--no-deps", f"{dist}=={version}", "-d", str(dest)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / sdist.group(1)).is_file(), sorted(p.name for p in dest.iterdir())
    return dest


def _orch_build(
    project: Path, out: Path, mirror: Path, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`orch build` of a real project, its library sources from the mirror."""
    env = {"ORCH_SOURCE_MIRROR": str(mirror), **PROBE}
    return orch(
        "build", "-f", str(project), "-o", str(out), "--plain", *args, env=env, timeout=timeout
    )


def _stock_images_for(jobs: list[dict[str, Any]]) -> None:
    """Builds the stock images the plan's jobs will be verified in (`stock-images: auto`
    uses only those present): the opt-in run requires a stock verification per job."""
    wanted: dict[str, set[str]] = {}
    for job in jobs:
        name = stock.predict_default(job["python"], job["policy"], job["arch"])
        if name is not None and engine.inspect_image(stock.stock_ref(name, job["arch"])) is None:
            wanted.setdefault(job["arch"], set()).add(name.removeprefix(stock.PREFIX))
    for arch, suites in sorted(wanted.items()):
        made = orch("images", "build-stock", *sorted(suites), "--arch", arch, timeout=3600)
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]


def _build(project: Path, out: Path, mirror: Path, *args: str) -> tuple[dict, float]:  # type: ignore[type-arg]
    plan_file = out.parent / f"{out.name}-plan.json"
    plan = orch("plan", "-f", str(project), "--json", *args, env=PROBE)
    assert plan.returncode == 0, plan.stderr
    plan_file.write_text(plan.stdout)
    if ALL:
        _stock_images_for(json.loads(plan.stdout)["jobs"])
    t0 = time.monotonic()
    proc = _orch_build(project, out, mirror, *args, timeout=7200)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    check = orch("report", str(out), "--expect-plan", str(plan_file), "--wheelhouse", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    return json.loads(plan.stdout), seconds


def _check_wheels(spec: Project, plan: dict, out: Path) -> None:  # type: ignore[type-arg]
    report = json.loads((out / ".orch" / "report.json").read_text())
    assert {j["id"] for j in report["jobs"]} == {j["id"] for j in plan["jobs"]}
    for job in report["jobs"]:
        assert job["status"] == "ok", job
        errors = [f for f in job["audit"]["findings"] if f["severity"] == "error"]
        assert errors == [], errors
        verified = {v["image"]: v["status"] for v in job["verify"]}
        assert set(verified.values()) == {"passed"}, verified
        # The user's side: a stock image is used when present (`stock-images: auto`); the
        # opt-in run builds the ones its plan needs first (`_stock_images_for`); on a fresh
        # CI machine none is, and tests/test_stock_images.py covers that path there. No
        # Debian suite's python3 is 3.15 or free-threaded: those have none.
        planned = next(j for j in plan["jobs"] if j["id"] == job["id"])
        if ALL and stock.predict_default(planned["python"], planned["policy"], planned["arch"]):
            assert any(i.startswith("stock:") for i in verified), verified
        if job["id"].startswith("cp313t-"):
            gil = {v["image"]: v.get("gil") for v in job["verify"]}
            print(f"{job['id']}: GIL after import: {gil}")
            assert set(gil.values()) == {"disabled"}, gil
        log = Path(job["log"]).read_text()
        assert spec.smoke in log and re.search(spec.linked, log)
        with zipfile.ZipFile(out / job["wheel"]["filename"]) as zf:
            names = zf.namelist()
        assert any(re.match(spec.extension, n) for n in names), names
        grafted = [n for n in names if ".libs/" in n]
        for lib in spec.bundled_static:  # linked statically, never grafted as a shared copy
            assert not [n for n in grafted if lib.removeprefix("lib") in n], grafted
    # requires-python: versions outside it are planned out, with the reason
    assert all(
        "requires-python" in e["reason"]
        or "has no CPython" in e["reason"]
        or "built in the local manylinux_2_39 image instead" in e["reason"]
        for e in plan["excluded"]
        if e["kind"] != "deselected"  # --arch
    ), plan["excluded"]


@pytest.mark.parametrize(
    "name",
    [
        "pyyaml",
        *(
            pytest.param(n, marks=pytest.mark.skipif(not ALL, reason="ORCH_TEST_REAL_PROJECTS=1"))
            for n in PROJECTS
            if n != "pyyaml"
        ),
    ],
)
def test_real_project_x86_64(
    name: str, x86_images: tuple[str, str], library_mirror: Path, tmp_path: Path, cache_dir: Path
) -> None:
    project = _example(name, tmp_path, library_mirror)
    # CI: one Python (the images' default one, no extra interpreter compile); every
    # Python the recipe lists with ORCH_TEST_REAL_PROJECTS=1.
    only = () if ALL else ("--only", "cp311-*")
    plan, seconds = _build(project, tmp_path / "wh", library_mirror, "--arch", "x86_64", *only)
    assert plan["jobs"], plan
    if ALL:  # the real sdist's facts give the jobs the unit test expects
        assert {j["id"] for j in plan["jobs"]} == _on(EXPECTED[name], "x86_64")
    _check_wheels(PROJECTS[name], plan, tmp_path / "wh")
    print(f"{name} x86_64: {len(plan['jobs'])} job(s) in {seconds:.0f} s")


@pytest.mark.emulated
@pytest.mark.skipif(not ALL, reason="ORCH_TEST_REAL_PROJECTS=1")
@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_real_project_aarch64(
    name: str, library_mirror: Path, tmp_path: Path, cache_dir: Path
) -> None:
    project = _example(name, tmp_path, library_mirror)
    plan, seconds = _build(project, tmp_path / "wh", library_mirror, "--arch", "aarch64")
    assert {j["id"] for j in plan["jobs"]} == _on(EXPECTED[name], "aarch64")
    _check_wheels(PROJECTS[name], plan, tmp_path / "wh")
    print(f"{name} aarch64: {len(plan['jobs'])} job(s) in {seconds:.0f} s")


def _on(ids: set[str], arch: str) -> set[str]:
    return {i for i in ids if i.endswith("_" + arch)}


# The failing builds keep the Pythons they built before the recipes listed 3.13t, 3.14
# and 3.15: each would only fail the same way, after a compile (cp313t) or an image
# (forky) that a fresh CI machine does not have.
AS_BEFORE = ("--only", "cp311-manylinux_2_31_*", "--only", "cp313-manylinux_2_31_*")


def _build_fails_landing_nothing(project: Path, out: Path, mirror: Path) -> dict[str, Any]:
    """An x86_64 build every job of which must fail: exit 1, no wheel; the report."""
    proc = _orch_build(project, out, mirror, "--arch", "x86_64", *AS_BEFORE, timeout=3600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list(out.glob("*.whl"))
    report: dict[str, Any] = json.loads((out / ".orch" / "report.json").read_text())
    assert {j["status"] for j in report["jobs"]} == {"failed"}
    return report


def test_pyyaml_without_libyaml_fails_and_lands_nothing(
    x86_images: tuple[str, str], library_mirror: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """PyYAML builds a pure-Python fallback when libyaml is missing; orch must not ship it."""
    project = _example("pyyaml", tmp_path, library_mirror)
    recipe = project / "orch.yaml"
    text = recipe.read_text()
    recipe.write_text(text.replace("dependencies:\n  - use: libyaml\n", ""))
    assert "- use: libyaml" in text and "- use: libyaml" not in recipe.read_text()
    _build_fails_landing_nothing(project, tmp_path / "wh", library_mirror)


@pytest.mark.skipif(not ALL, reason="ORCH_TEST_REAL_PROJECTS=1")
def test_pillow_without_a_required_library_fails_and_lands_nothing(
    x86_images: tuple[str, str], library_mirror: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """Pillow leaves a feature out when its library is missing; the example's enable_*
    settings must turn that into a failed job (here: only zlib and libjpeg-turbo given)."""
    project = _example("pillow", tmp_path, library_mirror)
    recipe = project / "orch.yaml"
    text = recipe.read_text()
    kept = text.split("dependencies:\n", 1)[1].split("test:\n", 1)[0]
    entries = ["  - use:" + e for e in kept.split("  - use:")[1:]]
    only = "".join(e for e in entries if e.split()[2] in ("zlib", "libjpeg-turbo"))
    recipe.write_text(text.replace(kept, only))
    assert "use: libtiff" not in recipe.read_text() and "use: zlib" in recipe.read_text()
    report = _build_fails_landing_nothing(project, tmp_path / "wh", library_mirror)
    log = Path(report["jobs"][0]["log"]).read_text()
    assert "'-C tiff=enable'" in log, log[-3000:]  # Pillow's own message names the feature
