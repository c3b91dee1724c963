"""Local manylinux-compatible images: naming (unit) and content (against the engine)."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.errors import ConfigError, EnvironmentProblem
from orchestrator.images import definition, local, rootfs
from orchestrator.images.local import LOCAL_POLICY_BY_SUITE, ensure_local_image, local_image_ref

REF_PATTERN = r"^orch-local/manylinux_2_31_x86_64(-runtime)?:[0-9a-f]{12}$"


# --- naming: pure, no Docker -----------------------------------------------------------


@pytest.fixture()
def definitions_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of images/ that the test may edit."""
    copy = tmp_path / "images"
    shutil.copytree(definition.images_dir(), copy)
    monkeypatch.setattr(definition, "images_dir", lambda: copy)
    return copy / definition.DEFINITION_SUBDIR


def test_ref_is_stable_and_well_formed() -> None:
    runtime = local_image_ref("x86_64", "runtime")
    build = local_image_ref("x86_64", "build")
    assert runtime == local_image_ref("x86_64", "runtime", "bullseye")
    assert build == local_image_ref("x86_64", "build")
    assert re.match(REF_PATTERN, runtime) and re.match(REF_PATTERN, build)
    assert runtime.endswith(build.split(":")[1])  # one definition, two variants
    assert runtime.startswith("orch-local/manylinux_2_31_x86_64-runtime:")
    assert build.startswith("orch-local/manylinux_2_31_x86_64:")


def test_ref_differs_per_arch_suite_and_pythons() -> None:
    refs = {
        local_image_ref("x86_64", "build"),
        local_image_ref("i686", "build"),
        local_image_ref("aarch64", "build"),
        local_image_ref("x86_64", "build", "bookworm"),
        local_image_ref("x86_64", "build", pythons=("cp39",)),
    }
    assert len(refs) == 5


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: _append(d / "bullseye.yaml", "\n# comment only\n"),
        lambda d: _replace(d / "bullseye.yaml", "- cmake\n", "- cmake\n    - bison\n"),
        lambda d: _append(d / "Dockerfile", "\nLABEL x=y\n"),
        lambda d: _append(d / "scripts" / "setup-build.sh", "\ntrue\n"),
        lambda d: (d / "scripts" / "new-step.sh").write_text("true\n"),
    ],
    ids=["yaml-comment", "package-list", "dockerfile", "script", "new-script"],
)
def test_ref_changes_when_the_definition_changes(definitions_copy: Path, edit: object) -> None:
    before = local_image_ref("x86_64", "build")
    assert callable(edit)
    edit(definitions_copy)
    after = local_image_ref("x86_64", "build")
    assert after != before
    assert after.split(":")[0] == before.split(":")[0]


def test_other_suites_file_does_not_change_the_ref(definitions_copy: Path) -> None:
    before = local_image_ref("x86_64", "build")
    _append(definitions_copy / "bookworm.yaml", "\n# unrelated\n")
    assert local_image_ref("x86_64", "build") == before


def test_format_version_is_part_of_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    before = local_image_ref("aarch64", "runtime")
    monkeypatch.setattr(definition, "FORMAT_VERSION", definition.FORMAT_VERSION + 1)
    assert local_image_ref("aarch64", "runtime") != before


def test_labels_and_buildargs() -> None:
    plan = definition.plan_image("x86_64")
    labels = plan.labels("runtime")
    assert labels["io.orch.image"] == "local"
    assert labels["io.orch.variant"] == "runtime"
    assert labels["io.orch.policy"] == "manylinux_2_31"
    assert labels["io.orch.arch"] == "x86_64"
    assert labels["io.orch.pythons"] == "cp39-cp39,cp311-cp311"
    assert labels["io.orch.glibc"] == "2.31"
    assert labels["io.orch.definition"] == plan.digest and len(plan.digest) == 64
    assert plan.buildargs["SETARCH"] == ""
    assert definition.plan_image("i686").buildargs["SETARCH"] == "linux32"


def test_default_pythons_follow_native_execution() -> None:
    defn = definition.load_suite("bullseye")
    assert definition.default_pythons(defn, "x86_64", host="x86_64") == ("cp39-cp39", "cp311-cp311")
    assert definition.default_pythons(defn, "i686", host="x86_64") == ("cp39-cp39", "cp311-cp311")
    for emulated in ("aarch64", "ppc64le", "s390x", "armv7l"):
        assert definition.default_pythons(defn, emulated, host="x86_64") == ("cp39-cp39",)
    assert definition.default_pythons(defn, "aarch64", host="aarch64")[-1] == "cp311-cp311"


def test_python_tags_are_normalized_and_checked() -> None:
    defn = definition.load_suite("bullseye")
    got = definition.resolve_pythons(defn, "aarch64", ("3.11", "cp39"))
    assert got == ("cp39-cp39", "cp311-cp311")
    with pytest.raises(ConfigError, match="cp312"):
        definition.resolve_pythons(defn, "x86_64", ("cp312",))
    with pytest.raises(ConfigError):
        definition.normalize_python("pypy39")


def test_unknown_inputs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="suite"):
        local_image_ref("x86_64", "build", "sid-of-nowhere")
    with pytest.raises(ConfigError, match="architecture"):
        local_image_ref("mips", "build")
    with pytest.raises(ConfigError, match="variant"):
        local_image_ref("x86_64", "debug")


def test_every_suite_has_a_definition_and_an_auditwheel_policy() -> None:
    policy_json = _auditwheel_policy_names()
    for suite, (policy, glibc) in LOCAL_POLICY_BY_SUITE.items():
        defn = definition.load_suite(suite)
        assert (defn.policy, defn.glibc) == (policy, glibc)
        assert policy == "manylinux_" + glibc.replace(".", "_")
        if policy_json is not None:
            assert policy in policy_json


def test_missing_binfmt_handler_is_an_environment_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rootfs, "BINFMT_DIR", tmp_path)
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    with pytest.raises(EnvironmentProblem, match="qemu-aarch64"):
        rootfs.check_binfmt(archs.get("aarch64"))
    (tmp_path / "qemu-aarch64").write_text("disabled\n")
    with pytest.raises(EnvironmentProblem, match="disabled"):
        rootfs.check_binfmt(archs.get("aarch64"))
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /x\nflags: P\n")
    with pytest.raises(EnvironmentProblem, match="F"):
        rootfs.check_binfmt(archs.get("aarch64"))
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /x\nflags: PF\n")
    rootfs.check_binfmt(archs.get("aarch64"))
    rootfs.check_binfmt(archs.get("i686"))  # native: no handler needed


def test_missing_debootstrap_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(EnvironmentProblem, match="debootstrap"):
        rootfs.check_debootstrap()


def test_rootfs_cache_is_keyed_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path))
    arch = archs.get("x86_64")
    key = definition.rootfs_key_for("bullseye", arch)
    path = rootfs.tarball_path("bullseye", arch, key)
    assert path.is_relative_to(tmp_path)
    assert key != definition.rootfs_key_for("bookworm", arch)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"cached")
    monkeypatch.setattr(rootfs, "check_debootstrap", _fail)  # a hit must not debootstrap
    assert rootfs.ensure_rootfs("bullseye", arch, key, lambda _l: None) == path


def test_stale_images_are_those_whose_definition_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = definition.plan_image("x86_64")

    def image(ref: str, **extra: str) -> engine.ImageInfo:
        labels = {**plan.labels("build"), **extra}
        return engine.ImageInfo(ref, "sha256:0", "amd64", "", labels, {}, ())

    current = image(plan.ref("build"))
    old = image(plan.ref("build").split(":")[0] + ":000000000000")
    gone = image("orch-local/manylinux_2_99_x86_64:000000000000", **{"io.orch.suite": "gone"})
    monkeypatch.setattr(engine, "list_images", lambda _label: [current, old, gone])
    assert local.stale_local_images() == sorted([old.ref, gone.ref])


# --- content: against the engine --------------------------------------------------------


@pytest.mark.docker
def test_x86_64_images_metadata(x86_images: tuple[str, str]) -> None:
    build_ref, runtime_ref = x86_images
    assert build_ref == local_image_ref("x86_64", "build")
    assert runtime_ref == local_image_ref("x86_64", "runtime")
    for ref, variant in ((build_ref, "build"), (runtime_ref, "runtime")):
        info = engine.inspect_image(ref)
        assert info is not None
        assert info.architecture == "amd64"
        assert info.labels["io.orch.variant"] == variant
        assert info.labels["io.orch.policy"] == "manylinux_2_31"
        assert info.labels["io.orch.arch"] == "x86_64"
        assert info.labels["io.orch.pythons"] == "cp39-cp39,cp311-cp311"
        assert info.labels["io.orch.glibc"] == "2.31"
        assert info.labels["io.orch.definition"].startswith(ref.split(":")[1])
        assert info.env["AUDITWHEEL_PLAT"] == "manylinux_2_31_x86_64"
        assert info.env["AUDITWHEEL_POLICY"] == "manylinux_2_31"
        assert info.env["AUDITWHEEL_ARCH"] == "x86_64"


@pytest.mark.docker
def test_warm_ensure_is_fast(x86_images: tuple[str, str]) -> None:
    start = time.monotonic()
    info = ensure_local_image("x86_64", "build")
    assert info.ref == x86_images[0]
    assert time.monotonic() - start < 2.0


@pytest.mark.docker
def test_x86_64_interpreters(x86_images: tuple[str, str]) -> None:
    _build_ref, runtime_ref = x86_images
    with _container(runtime_ref) as c:
        for tag, version in (("cp39-cp39", "3.9."), ("cp311-cp311", "3.11.")):
            py = f"/opt/python/{tag}/bin/python"
            code, out = _run(c, [py, "-c", _PROBE])
            assert code == 0, out
            probe = json.loads(out.strip().splitlines()[-1])
            assert probe["version"].startswith(version)
            short = tag.split("-")[0]
            assert f"{short}-{short}-manylinux_2_31_x86_64" in probe["tags"]
            assert f"{short}-{short}-manylinux_2_32_x86_64" not in probe["tags"]
            code, out = _run(c, [f"/opt/python/{tag}/bin/pip", "--version"])
            assert code == 0 and f"python {version[:-1]}" in out, out
        code, out = _run(c, ["ldd", "--version"])
        assert "2.31" in out.splitlines()[0]


@pytest.mark.docker
def test_runtime_has_no_toolchain_and_build_has_it(x86_images: tuple[str, str]) -> None:
    build_ref, runtime_ref = x86_images
    tools = "gcc g++ cc make cmake auditwheel patchelf meson ninja"
    with _container(runtime_ref) as c:
        for tool in tools.split():
            code, _ = _run(c, ["sh", "-c", f"command -v {tool}"])
            assert code != 0, f"{tool} must not be in the runtime image"
        code, _ = _run(c, ["test", "-e", "/usr/include/python3.9/Python.h"])
        assert code != 0, "no Python headers in the runtime image"
    with _container(build_ref) as c:
        for tool in (*tools.split(), "pkg-config", "autoconf", "libtool", "patch", "file", "curl"):
            code, out = _run(c, ["sh", "-c", f"command -v {tool}"])
            assert code == 0, f"{tool} missing from the build image: {out}"
        code, out = _run(c, ["auditwheel", "--version"])
        assert code == 0, out
        code, out = _run(c, ["cmake", "--version"])
        assert code == 0, out
        for tag in ("cp39-cp39", "cp311-cp311"):
            code, out = _run(c, [f"/opt/python/{tag}/bin/python", "-m", "build", "--version"])
            assert code == 0, out


_EXT_SETUP = """
from setuptools import Extension, setup
setup(name="orchprobe", version="1.0", ext_modules=[Extension("orchprobe", ["orchprobe.c"], libraries=["bz2"])])
"""
_EXT_C = """
#include <Python.h>
#include <bzlib.h>
static PyObject *v(PyObject *s, PyObject *a) { return PyUnicode_FromString(BZ2_bzlibVersion()); }
static PyMethodDef m[] = {{"bzversion", v, METH_NOARGS, ""}, {0}};
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "orchprobe", 0, -1, m};
PyMODINIT_FUNC PyInit_orchprobe(void) { return PyModule_Create(&d); }
"""


@pytest.mark.docker
@pytest.mark.parametrize("tag", ["cp39-cp39", "cp311-cp311"])
def test_extension_wheel_builds_repairs_and_installs(x86_images: tuple[str, str], tag: str) -> None:
    """The point of the pair: build + auditwheel repair in one, install and run in the other."""
    build_ref, runtime_ref = x86_images
    py = f"/opt/python/{tag}/bin/python"
    with _container(build_ref) as c:
        engine.put_tar(c, _tar({"setup.py": _EXT_SETUP, "orchprobe.c": _EXT_C}, "src"), "/tmp")
        script = (
            f"{py} -m build --wheel --no-isolation /tmp/src -o /tmp/dist && "
            "auditwheel repair --plat $AUDITWHEEL_PLAT -w /tmp/wheel /tmp/dist/*.whl"
        )
        code, out = _run(c, ["sh", "-c", script], workdir="/tmp/src")
        assert code == 0, out
        wheel_tar = engine.get_tar(c, "/tmp/wheel")
    with tarfile.open(fileobj=io.BytesIO(wheel_tar)) as tar:
        names = tar.getnames()
    short = tag.split("-")[0]
    wheels = [n for n in names if n.endswith(".whl") and f"-{short}-{short}-" in n]
    assert wheels and "manylinux_2_31_x86_64" in wheels[0], names  # among its platform tags
    with _container(runtime_ref) as c:
        engine.put_tar(c, wheel_tar, "/tmp")
        code, out = _run(
            c,
            [
                "sh",
                "-c",
                f"{py} -m pip install --no-index /tmp/wheel/*.whl && "
                f"cd / && {py} -c 'import orchprobe; print(orchprobe.bzversion())'",
            ],
        )
        assert code == 0, out
        assert "1.0." in out


@pytest.mark.docker
def test_i686_images_if_present(docker_engine: None) -> None:
    """Not built here (a cold build compiles CPython); checked when `build-local` made it."""
    ref = local_image_ref("i686", "build")
    if engine.inspect_image(ref) is None:
        pytest.skip(f"{ref} not built (orch images build-local --arch i686)")
    info = engine.inspect_image(ref)
    assert info is not None and info.architecture == "386"
    with _container(ref, platform="linux/386") as c:
        code, out = _run(c, ["linux32", "uname", "-m"])
        assert out.strip() == "i686", out
        code, out = _run(c, ["/opt/python/cp311-cp311/bin/python", "-c", _PROBE])
        assert code == 0 and "manylinux_2_31_i686" in out, out
        code, out = _run(c, ["file", "-L", "/opt/python/cp311-cp311/bin/python"])
        assert "ELF 32-bit" in out, out


@pytest.mark.docker
@pytest.mark.emulated
def test_aarch64_build_image_runs_under_qemu(docker_engine: None) -> None:
    info = ensure_local_image("aarch64", "build")
    assert info.architecture == "arm64"
    assert info.env["AUDITWHEEL_PLAT"] == "manylinux_2_31_aarch64"
    assert info.labels["io.orch.pythons"] == "cp39-cp39"
    with _container(info.ref, platform="linux/arm64") as c:
        code, out = _run(c, ["uname", "-m"])
        assert code == 0 and out.strip() == "aarch64", out
        code, out = _run(c, ["/opt/python/cp39-cp39/bin/python", "-c", _PROBE])
        assert code == 0 and "cp39-cp39-manylinux_2_31_aarch64" in out, out


# --- helpers ----------------------------------------------------------------------------

_PROBE = (
    "import json, sys; from pip._vendor.packaging.tags import sys_tags; "
    "print(json.dumps({'version': sys.version.split()[0], 'tags': [str(t) for t in sys_tags()]}))"
)


@contextmanager
def _container(ref: str, platform: str | None = None) -> Iterator[Any]:
    c = engine.create_container(ref, labels={"io.orch.test": "images-local"}, platform=platform)
    try:
        yield c
    finally:
        engine.remove_container(c)


def _run(c: Any, cmd: list[str], workdir: str | None = None) -> tuple[int, str]:
    chunks: list[bytes] = []
    result = engine.exec_stream(c, cmd, chunks.append, workdir=workdir)
    return result.exit_code, b"".join(chunks).decode(errors="replace")


def _tar(files: dict[str, str], top: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top_dir = tarfile.TarInfo(top)
        top_dir.type, top_dir.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top_dir)
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"{top}/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _auditwheel_policy_names() -> set[str] | None:
    try:
        import auditwheel.policy
    except ImportError:
        return None
    policy_file = Path(auditwheel.policy.__file__).parent / "manylinux-policy.json"
    return {p["name"] for p in json.loads(policy_file.read_text())}


def _fail(*_args: object) -> str:
    raise AssertionError("must not be called")
