"""exported-static-libs attributes an exported symbol to a dependency only when the
dependency's archives (its prefix artifact) define it; the project's own exports beyond
PyInit_* are their own finding (exported-own, a warning with the version-script fix).

Real parts: objects compiled by the host gcc, archives made by ar, shared objects linked
by gcc, the artifact a tar.gz as the dependency stage stores it."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from orchestrator.audit import audit_wheel
from orchestrator.audit.archives import archive_symbols, linked_libraries
from tests.test_audit import make_wheel

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc and ar")

# A stand-in libjpeg: what the dependency defines.
LIBJPEG_C = """
int jpeg_mem_src(int x) { return x + 1; }
int jpeg_read_header(int x) { return x * 2; }
static int jpeg_private_helper(int x) { return x; }
int jpeg_std_error(int x) { return jpeg_private_helper(x) - 1; }
"""
# An extension whose own functions are named like libjpeg's (as Pillow's jpeg_buffer_src).
OWN_C = """
#include <stddef.h>
int jpeg_mem_src(int x);
int jpeg_buffer_src(int x) { return jpeg_mem_src(x) + 10; }
int jpeg_buffer_dest(int x) { return x - 10; }
void *PyInit__imaging(void) { return NULL; }
"""


def _compile(tmp: Path, name: str, source: str) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(source)
    obj = tmp / f"{name}.o"
    subprocess.run(["gcc", "-c", "-fPIC", "-O2", "-o", str(obj), str(src)], check=True)
    return obj


def _archive(tmp: Path, index: bool = True) -> Path:
    obj = _compile(tmp, "jpeglike", LIBJPEG_C)
    lib = tmp / ("libjpeg.a" if index else "libjpeg-noindex.a")
    subprocess.run(["ar", "rcs" if index else "rcS", str(lib), str(obj)], check=True)
    return lib


def _artifact(tmp: Path, archive: Path) -> Path:
    """The dependency's artifact: the files it installed, relative to the prefix."""
    out = tmp / "libjpeg-turbo-artifact.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(archive, arcname="lib/libjpeg.a")
        header = b"int jpeg_mem_src(int);\n"
        info = tarfile.TarInfo("include/jpeglib.h")
        info.size = len(header)
        tar.addfile(info, io.BytesIO(header))
    return out


def _extension(tmp: Path, archive: Path, *ldflags: str) -> Path:
    src = tmp / "imaging.c"
    src.write_text(OWN_C)
    so = tmp / "_imaging.so"
    cmd = ["gcc", "-shared", "-fPIC", "-O2", "-o", str(so), str(src), str(archive), *ldflags]
    subprocess.run(cmd, check=True)
    return so


def _wheel(tmp: Path, so: Path, dist: str) -> Path:
    return make_wheel(tmp, {"pkg/_imaging.so": so.read_bytes()}, dist=dist)


def test_archive_symbols_with_and_without_an_index(tmp_path: Path) -> None:
    expected = {"jpeg_mem_src", "jpeg_read_header", "jpeg_std_error"}
    assert archive_symbols(_archive(tmp_path).read_bytes()) == expected
    # no index (ar S): read from the members' own symbol tables, same answer
    assert archive_symbols(_archive(tmp_path, index=False).read_bytes()) == expected
    assert archive_symbols(b"not an archive") == frozenset()


def test_linked_libraries_reads_the_artifacts_archives(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, _archive(tmp_path))
    (lib,) = linked_libraries({"libjpeg-turbo": artifact})
    assert lib.name == "libjpeg-turbo" and lib.archives == ("lib/libjpeg.a",)
    assert "jpeg_mem_src" in lib.symbols and "jpeg_private_helper" not in lib.symbols
    # a dependency that installed no archive (headers only) is left out
    headers = tmp_path / "h.tar.gz"
    with tarfile.open(headers, "w:gz") as tar:
        tar.add(artifact, arcname="include/x.h")
    assert linked_libraries({"hdr": headers}) == ()


def test_own_functions_named_like_the_dependency_are_not_blamed_on_it(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    linked = linked_libraries({"libjpeg-turbo": _artifact(tmp_path, archive)})
    # the dependency's symbols hidden (orch's default LDFLAGS); the project's own exported
    so = _extension(tmp_path, archive, "-Wl,--exclude-libs,ALL")
    wheel = _wheel(tmp_path, so, "own")

    by_name = audit_wheel(wheel, bundled_static=["libjpeg-turbo"])
    blamed = [i for f in by_name.by_check("exported-static-libs") for i in f.items]
    assert "libjpeg-turbo: T jpeg_buffer_src" in blamed  # what a name prefix concludes

    by_fact = audit_wheel(wheel, bundled_static=["libjpeg-turbo"], linked=linked)
    assert by_fact.by_check("exported-static-libs") == ()
    (own,) = by_fact.by_check("exported-own")
    assert own.severity == "warning"
    assert set(own.items) == {"T jpeg_buffer_src", "T jpeg_buffer_dest"}
    assert "version-script" in own.message and "PyInit__imaging" in own.message
    assert by_fact.ok()
    # an intended export is not a finding
    allowed = audit_wheel(wheel, linked=linked, allow_exports=["jpeg_buffer_*"])
    assert allowed.by_check("exported-own") == ()


def test_a_truly_leaked_dependency_symbol_still_fails(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    linked = linked_libraries({"libjpeg-turbo": _artifact(tmp_path, archive)})
    so = _extension(tmp_path, archive)  # no --exclude-libs: libjpeg's jpeg_mem_src leaks
    result = audit_wheel(_wheel(tmp_path, so, "leak"), linked=linked)
    (finding,) = result.by_check("exported-static-libs")
    assert finding.severity == "error" and not result.ok()
    # the whole member was linked in: all three of its functions leak
    assert set(finding.items) == {
        "libjpeg-turbo: T jpeg_mem_src",
        "libjpeg-turbo: T jpeg_read_header",
        "libjpeg-turbo: T jpeg_std_error",
    }
    assert "defined in lib/libjpeg.a" in finding.message
    # the project's own functions are still only a warning, reported apart
    (own,) = result.by_check("exported-own")
    assert set(own.items) == {"T jpeg_buffer_src", "T jpeg_buffer_dest"}


def test_grafted_shared_libraries_are_not_own_exports(tmp_path: Path) -> None:
    src = tmp_path / "z.c"
    src.write_text("int zthing(int x) { return x; }\n")
    so = tmp_path / "libz-1a2b3c4d.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    wheel = make_wheel(tmp_path, {"pkg.libs/libz-1a2b3c4d.so.1": so.read_bytes()}, dist="g")
    assert audit_wheel(wheel).by_check("exported-own") == ()


def test_orch_audit_cli_takes_archives(tmp_path: Path) -> None:
    """Standalone `orch audit --archive NAME=PATH`: the same attribution by fact."""
    import json
    import sys

    archive = _archive(tmp_path)
    wheel = _wheel(tmp_path, _extension(tmp_path, archive, "-Wl,--exclude-libs,ALL"), "cli")
    base = [sys.executable, "-m", "orchestrator", "audit", "--json", str(wheel)]
    by_name = subprocess.run([*base, "--bundled", "libjpeg-turbo"], capture_output=True, text=True)
    assert by_name.returncode == 1  # jpeg_buffer_src blamed on libjpeg-turbo by its prefix
    for given in (str(archive), str(_artifact(tmp_path, archive))):
        proc = subprocess.run(
            [*base, "--archive", f"libjpeg-turbo={given}"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (result,) = json.loads(proc.stdout)["results"]
        checks = {f["check"]: f["severity"] for f in result["findings"]}
        assert checks.get("exported-own") == "warning" and "exported-static-libs" not in checks
    bad = subprocess.run([*base, "--archive", "x=/nonexistent.a"], capture_output=True, text=True)
    assert bad.returncode == 2 and "/nonexistent.a is not a file" in bad.stderr


@pytest.mark.docker
def test_orch_build_attributes_by_the_jobs_archives(  # type: ignore[no-untyped-def]
    x86_images: tuple[str, str], world
) -> None:
    """End to end: the project defines orcha_helper; the dependency orcha (whose name alone
    would claim every orcha_* symbol) defines orcha_value only. The job lands, with the
    own export as a warning and no exported-static-libs finding."""
    import json

    from tests.support.depworld import build, write_recipe

    tmp, base, tarballs, proj = world
    source = proj / "depuser.c"
    source.write_text(source.read_text() + "int orcha_helper(void) { return 7; }\n")
    recipe = write_recipe(tmp, base, tarballs, python='["3.11"]')
    proc = build(recipe, tmp / "wh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp / "wh" / ".orch" / "report.json").read_text())
    (job,) = report["jobs"]
    findings = job["audit"]["findings"]
    assert [f for f in findings if f["check"] == "exported-static-libs"] == []
    (own,) = [f for f in findings if f["check"] == "exported-own"]
    assert own["severity"] == "warning" and own["items"] == ["T orcha_helper"]
