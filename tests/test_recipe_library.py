"""Opt-in: build every recipe of orch's library (recipes/*.yaml) from real tarballs.

Upstream hosts are not reachable from tests, so the tarballs come from a local mirror
directory named by ``ORCH_TEST_LIBRARY_MIRROR`` (files named by sha256 or by filename,
as orch's own ``mirrors: [{directory: ...}]``). Without it the tests skip; a recipe
whose tarball (or a requirement's) is missing from the mirror skips too.

Each recipe is built with its requirements, in DAG order, into a fresh prefix by
:func:`build_dependency` (the host today; the container builder later), and then must
hold static, position-independent archives for its exports and no shared library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from orchestrator.deps.buildsys import EXCLUDE_LIBS, build_script
from orchestrator.recipe.model import DependencySpec, Exports, SourceSpec

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MIRROR_ENV = "ORCH_TEST_LIBRARY_MIRROR"

pytestmark = [pytest.mark.optin, pytest.mark.slow]

# Defined by the linker in every shared object, not by the archive under test.
LINKER_SYMBOLS = frozenset({"_init", "_fini", "_edata", "_end", "__bss_start"})


# --- the library -------------------------------------------------------------------------


def load_library_recipe(file: Path) -> DependencySpec:
    """One recipe file as the model (a plain reading, until the loader is used here)."""
    data = yaml.safe_load(file.read_text())
    src = data["source"]
    urls = (src["url"],) if isinstance(src["url"], str) else tuple(src["url"])
    build = data.get("build", {})
    exports = data.get("exports", {})
    return DependencySpec(
        name=str(data["name"]),
        version=str(data["version"]),
        source=SourceSpec(
            urls=urls,
            sha256=str(src["sha256"]),
            filename=str(src.get("filename") or urls[0].rsplit("/", 1)[-1]),
            strip_components=int(src.get("strip-components", 1)),
            patches=tuple((file.parent / p).resolve() for p in src.get("patches", ())),
        ),
        build_system=str(build["system"]),
        options=tuple(str(o) for o in build.get("options", ())),
        script=str(build.get("script", "")),
        env=tuple(sorted((str(k), str(v)) for k, v in build.get("env", {}).items())),
        requires=tuple(data.get("requires", ())),
        exports=Exports(
            libs=tuple(exports.get("libs", ())),
            pkg_config=tuple(exports.get("pkg-config", ())),
            cmake_packages=tuple(exports.get("cmake", ())),
        ),
        origin=str(file),
    )


def library() -> dict[str, DependencySpec]:
    return {spec.name: spec for spec in map(load_library_recipe, sorted(RECIPES.glob("*.yaml")))}


def with_requirements(name: str, specs: dict[str, DependencySpec]) -> list[DependencySpec]:
    """``name`` and everything it requires, requirements first."""
    order: list[DependencySpec] = []

    def visit(n: str, path: tuple[str, ...]) -> None:
        assert n not in path, f"dependency cycle: {' -> '.join((*path, n))}"
        if any(s.name == n for s in order):
            return
        for r in specs[n].requires:
            visit(r, (*path, n))
        order.append(specs[n])

    visit(name, ())
    return order


def in_mirror(mirror: Path, src: SourceSpec) -> Path | None:
    for candidate in (
        mirror / src.sha256,
        mirror / src.filename,
        mirror / src.sha256 / src.filename,
    ):
        if candidate.is_file() and sha256_of(candidate) == src.sha256:
            return candidate
    return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the builder: swap this for the container builder -------------------------------------


def build_dependency(dep: DependencySpec, tarball: Path, prefix: Path, work: Path) -> None:
    """Unpack, patch, and run orch's build script for ``dep`` on this host."""
    src, build = work / dep.name / "src", work / dep.name / "build"
    src.mkdir(parents=True)
    build.mkdir(parents=True)
    subprocess.run(
        [
            "tar",
            "-xf",
            str(tarball),
            "-C",
            str(src),
            f"--strip-components={dep.source.strip_components}",
        ],
        check=True,
    )
    for patch in dep.source.patches:
        subprocess.run(["patch", "-p1", "-d", str(src), "-i", str(patch)], check=True)
    script = build_script(
        dep, src_dir=str(src), build_dir=str(build), prefix=str(prefix), jobs=os.cpu_count() or 2
    )
    (work / dep.name / "build.sh").write_text(script)
    log = work / dep.name / "build.log"
    with log.open("wb") as out:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=src,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        pytest.fail(
            f"{dep.name} {dep.version}: build failed ({result.returncode}); log tail:\n{tail}"
        )


Builder = Callable[[DependencySpec, Path, Path, Path], None]


# --- tests ---------------------------------------------------------------------------------


def test_library_is_a_dag_of_known_names() -> None:
    specs = library()
    assert len(specs) >= 14
    for name in specs:
        for dep in with_requirements(name, specs):
            assert dep.name in specs


@pytest.fixture(scope="module")
def mirror() -> Path:
    value = os.environ.get(MIRROR_ENV)
    if not value:
        pytest.skip(f"set {MIRROR_ENV}=/path/to/mirror to build the recipe library")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{MIRROR_ENV}={value} is not a directory")
    return path


@pytest.mark.parametrize("name", sorted(library()))
def test_recipe_builds_static_pic(name: str, mirror: Path, tmp_path: Path) -> None:
    specs = library()
    chain = with_requirements(name, specs)
    tarballs = {dep.name: in_mirror(mirror, dep.source) for dep in chain}
    missing = [f"{n} ({specs[n].source.filename})" for n, t in tarballs.items() if t is None]
    if missing:
        pytest.skip(f"not in the mirror: {', '.join(missing)}")
    prefix, work = tmp_path / "prefix", tmp_path / "work"
    builder: Builder = build_dependency
    for dep in chain:
        tarball = tarballs[dep.name]
        assert tarball is not None
        builder(dep, tarball, prefix, work)
    check_installed(specs[name], prefix, tmp_path)


def check_installed(dep: DependencySpec, prefix: Path, tmp_path: Path) -> None:
    lib = prefix / "lib"
    shared = [p for p in prefix.rglob("*") if p.name.endswith(".so") or ".so." in p.name]
    assert not shared, f"shared libraries left in the prefix: {shared}"
    for name in dep.exports.libs:
        archive = lib / f"lib{name}.a"
        assert archive.is_file(), f"{archive} missing"
        check_links_into_extension(archive, tmp_path)
    env = {**os.environ, "PKG_CONFIG_PATH": f"{lib}/pkgconfig:{prefix}/share/pkgconfig"}
    for pc in dep.exports.pkg_config:
        result = subprocess.run(
            ["pkg-config", "--static", "--libs", "--cflags", pc],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"pkg-config {pc}: {result.stderr}"
        assert str(prefix) in result.stdout or "-l" in result.stdout


def check_links_into_extension(archive: Path, tmp_path: Path) -> None:
    """Every member links into a shared object (so it is PIC), and exports nothing from it."""
    out = tmp_path / f"{archive.stem}-ext.so"
    stub = tmp_path / "ext.c"
    stub.write_text('__attribute__((visibility("default"))) int PyInit_ext(void) { return 0; }\n')
    cc = shutil.which("cc") or "gcc"
    link = subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-o",
            str(out),
            str(stub),
            EXCLUDE_LIBS,
            "-Wl,--whole-archive",
            str(archive),
            "-Wl,--no-whole-archive",
        ],
        capture_output=True,
        text=True,
    )
    assert link.returncode == 0, (
        f"{archive.name} does not link into a shared object:\n{link.stderr[-3000:]}"
    )
    listing = subprocess.run(
        ["nm", "-D", "--defined-only", str(out)], capture_output=True, text=True, check=True
    ).stdout
    exported = {line.split()[-1] for line in listing.splitlines() if line.strip()}
    assert "PyInit_ext" in exported
    leaked = sorted(exported - {"PyInit_ext", *LINKER_SYMBOLS})
    assert not leaked, f"{archive.name}: symbols exported despite {EXCLUDE_LIBS}: {leaked[:20]}"
    if platform.machine() == "x86_64":
        absolute = absolute_relocations(archive)
        assert not absolute, f"{archive.name}: non-PIC relocations: {absolute[:5]}"


def absolute_relocations(obj: Path) -> list[str]:
    """R_X86_64_32[S] relocations against loaded sections (debug info may keep them)."""
    relocs = subprocess.run(
        ["readelf", "-rW", str(obj)], capture_output=True, text=True, check=True
    )
    found: list[str] = []
    section = ""
    for line in relocs.stdout.splitlines():
        if line.startswith("Relocation section"):
            section = line.split("'")[1]
        elif not section.startswith(".rela.debug") and (
            "R_X86_64_32 " in line or "R_X86_64_32S" in line
        ):
            found.append(f"{section}: {line.strip()}")
    return found
