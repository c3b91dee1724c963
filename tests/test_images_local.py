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

from orchestrator import archs, options
from orchestrator.container import engine
from orchestrator.errors import ConfigError, EnvironmentProblem
from orchestrator.images import definition, local, rootfs
from orchestrator.images.local import LOCAL_POLICY_BY_SUITE, ensure_local_image, local_image_ref

REF_PATTERN = r"^orch-local/manylinux_2_31_x86_64(-runtime)?:[0-9a-f]{12}$"


# --- naming: pure, no Docker -----------------------------------------------------------


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
        lambda d: _replace(d / "bullseye.yaml", "- cmake\n", "- cmake\n    - bison\n"),
        lambda d: _replace(d / "bullseye.yaml", "pip==26.0.1]", "pip==26.0.0]"),
        lambda d: _append(d / "Dockerfile", "\nLABEL x=y\n"),
        lambda d: _append(d / "scripts" / "setup-build.sh", "\ntrue\n"),
        lambda d: _append(d / "scripts" / "common.sh", "\ntrue\n"),
    ],
    ids=["package-list", "pip-pin", "dockerfile", "script", "shared-script"],
)
def test_ref_changes_when_the_definition_changes(definitions_copy: Path, edit: object) -> None:
    before = local_image_ref("x86_64", "build")
    assert callable(edit)
    edit(definitions_copy)
    after = local_image_ref("x86_64", "build")
    assert after != before
    assert after.split(":")[0] == before.split(":")[0]


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: _append(d / "bullseye.yaml", "\n# comment only\n"),
        lambda d: (d / "scripts" / "new-step.sh").write_text("true\n"),
        lambda d: _append(d / "scripts" / "build-cpython.sh", "\ntrue\n"),
        lambda d: _append(d / "Dockerfile.cpython", "\nLABEL x=y\n"),
    ],
    ids=["yaml-comment", "unused-script", "cpython-script", "builder-dockerfile"],
)
def test_base_ref_ignores_what_it_is_not_built_from(definitions_copy: Path, edit: object) -> None:
    """Debian's interpreter only: the image is the base, named by what goes into it."""
    before = local_image_ref("aarch64", "build")
    assert callable(edit)
    edit(definitions_copy)
    assert local_image_ref("aarch64", "build") == before


def _interp(arch: str, tag: str) -> definition.InterpreterPlan:
    plan = definition.plan_image(arch, "bullseye", (tag,))
    (interp,) = plan.interpreters
    return interp


def test_a_base_change_does_not_recompile_interpreters(definitions_copy: Path) -> None:
    """A new build package gives a new base and job image, but the same interpreter key."""
    interp, image = _interp("x86_64", "3.13"), local_image_ref("x86_64", "build", pythons=("3.13",))
    _replace(definitions_copy / "bullseye.yaml", "- cmake\n", "- cmake\n    - bison\n")
    _append(definitions_copy / "scripts" / "setup-runtime.sh", "\ntrue\n")
    assert local_image_ref("x86_64", "build", pythons=("3.13",)) != image
    assert _interp("x86_64", "3.13").artifact_key("ab" * 32) == interp.artifact_key("ab" * 32)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: _append(d / "scripts" / "build-cpython.sh", "\ntrue\n"),
        lambda d: _replace(
            d / "bullseye.yaml", "    - uuid-dev\n", "    - uuid-dev\n    - tk-dev\n"
        ),
        lambda d: _replace(
            d / "bullseye.yaml", "cp313-cp313: {suite: trixie", "cp313-cp313: {suite: sid"
        ),
    ],
    ids=["build-script", "build-headers", "source-suite"],
)
def test_an_interpreter_change_recompiles_it(definitions_copy: Path, edit: object) -> None:
    before = _interp("x86_64", "3.13")
    other = _interp("x86_64", "3.11").spec_digest
    image = local_image_ref("x86_64", "build", pythons=("3.13",))
    assert callable(edit)
    edit(definitions_copy)
    after = _interp("x86_64", "3.13")
    assert after.artifact_key("ab" * 32) != before.artifact_key("ab" * 32)
    assert local_image_ref("x86_64", "build", pythons=("3.13",)) != image
    if "suite: sid" in (definitions_copy / "bullseye.yaml").read_text():
        assert _interp("x86_64", "3.11").spec_digest == other  # only the edited one


def test_interpreter_key_follows_the_source_and_the_arch() -> None:
    interp = _interp("x86_64", "3.13")
    assert interp.artifact_key("ab" * 32) != interp.artifact_key("cd" * 32)
    assert _interp("aarch64", "3.13").spec_digest != interp.spec_digest
    assert _interp("x86_64", "3.13t").spec_digest != interp.spec_digest
    assert _interp("x86_64", "3.13t").source.free_threaded


# Edits that touch neither the CPython builder nor the interpreter's own entry.
_UNRELATED_TO_AN_INTERPRETER = {
    "base-build-package": lambda d: _replace(
        d / "bullseye.yaml", "- cmake\n", "- cmake\n    - bison\n"
    ),
    "runtime-package": lambda d: _replace(
        d / "bullseye.yaml", "runtime: [ca-certificates,", "runtime: [ca-certificates, less,"
    ),
    "interpreter-runtime-library": lambda d: _replace(
        d / "bullseye.yaml", "    - libbz2-1.0\n", "    - libbz2-1.0\n    - libexpat1\n"
    ),
    "pip-pin": lambda d: _replace(d / "bullseye.yaml", "pip==26.0.1]", "pip==26.0.0]"),
    "a-source-python-fewer": lambda d: _replace(
        d / "bullseye.yaml",
        "  cp315-cp315t: {suite: forky, package: python3.15, free_threaded: true}\n",
        "",
    ),
    "another-interpreter": lambda d: _replace(
        d / "bullseye.yaml", "cp311-cp311: {suite: bookworm", "cp311-cp311: {suite: sid"
    ),
    "a-new-interpreter": lambda d: _replace(
        d / "bullseye.yaml",
        "source_pythons:\n",
        "source_pythons:\n  cp312-cp312: {suite: sid, package: python3.12}\n",
    ),
    "base-dockerfile": lambda d: _append(d / "Dockerfile", "\nLABEL x=y\n"),
    "base-scripts": lambda d: [
        _append(d / "scripts" / s, "\ntrue\n") for s in ("setup-runtime.sh", "setup-build.sh")
    ],
    "job-image-script": lambda d: _append(d / "scripts" / "add-pythons.sh", "\ntrue\n"),
    "other-suites": lambda d: [_append(d / f, "\n# x\n") for f in ("bookworm.yaml", "forky.yaml")],
}


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("edit", list(_UNRELATED_TO_AN_INTERPRETER))
def test_an_unrelated_definition_change_keeps_every_interpreter_key(
    definitions_copy: Path, edit: str, arch: str
) -> None:
    """A compiled interpreter (native or emulated, free-threaded or not) is keyed by what
    it is built from: a change elsewhere in the definitions leaves its key, so the stored
    tarball is used as it is."""
    # the edited entry itself is the one whose key may change
    tags = ("3.13", "3.13t") if edit == "another-interpreter" else ("3.11", "3.13", "3.13t")
    before = {t: _interp(arch, t).artifact_key("ab" * 32) for t in tags}
    _UNRELATED_TO_AN_INTERPRETER[edit](definitions_copy)
    assert {t: _interp(arch, t).artifact_key("ab" * 32) for t in tags} == before


def test_byte_compiling_script_keys_only_emulated_interpreters(definitions_copy: Path) -> None:
    """native-pyc.sh runs only in emulated compiles: editing it recompiles those, not the
    host's (whose tarball the emulated compiles byte-compile with)."""
    native, emulated = _interp("x86_64", "3.13t"), _interp("aarch64", "3.13t")
    _append(definitions_copy / "scripts" / definition.NATIVE_PYC_SCRIPT, "\ntrue\n")
    assert _interp("x86_64", "3.13t").spec_digest == native.spec_digest
    assert _interp("aarch64", "3.13t").spec_digest != emulated.spec_digest


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
    assert labels["io.orch.base"] == plan.base.ref("runtime") != plan.ref("runtime")
    assert plan.base.buildargs["SETARCH"] == ""
    assert definition.plan_image("i686").base.buildargs["SETARCH"] == "linux32"
    assert "SOURCE_PYTHONS" not in plan.base.buildargs  # interpreters are not in the base


def test_debian_interpreter_alone_is_the_base_image() -> None:
    plan = definition.plan_image("x86_64", pythons=("3.9",))
    assert not plan.derived and plan.ref("build") == plan.base.ref("build")
    assert plan.pythons == ("cp39-cp39",)
    # every image carries Debian's interpreter: asking for 3.13 alone gives 3.9 too
    assert definition.plan_image("x86_64", pythons=("3.13",)).pythons == (
        "cp39-cp39",
        "cp313-cp313",
    )


def test_default_suite_is_the_first_family_that_serves_the_arch() -> None:
    from orchestrator.images.commands import suite_for
    from orchestrator.plan import catalog

    cat = catalog.load()
    assert suite_for("aarch64", None, cat) == "bullseye"
    # Bullseye's archive no longer serves these: bookworm, not a failed root build.
    assert suite_for("ppc64le", None, cat) == "bookworm"
    assert suite_for("s390x", None, cat) == "bookworm"
    assert suite_for("ppc64le", "bookworm", cat) == "bookworm"
    assert suite_for("aarch64", "bookworm", cat) == "bookworm"
    with pytest.raises(ConfigError, match="no longer serves s390x; use --suite bookworm"):
        suite_for("s390x", "bullseye", cat)


def test_default_pythons_follow_native_execution() -> None:
    defn = definition.load_suite("bullseye")
    assert definition.default_pythons(defn, "x86_64", host="x86_64") == ("cp39-cp39", "cp311-cp311")
    assert definition.default_pythons(defn, "i686", host="x86_64") == ("cp39-cp39", "cp311-cp311")
    for emulated in ("aarch64", "ppc64le", "s390x", "armv7l"):
        assert definition.default_pythons(defn, emulated, host="x86_64") == ("cp39-cp39",)
    assert definition.default_pythons(defn, "aarch64", host="aarch64")[-1] == "cp311-cp311"
    bookworm = definition.load_suite("bookworm")
    # no python3.9 in bookworm: compiled from bullseye's source, as 3.13 is from trixie's
    assert definition.default_pythons(bookworm, "x86_64", host="x86_64") == (
        "cp39-cp39",
        "cp311-cp311",
    )


def test_every_suite_offers_the_reachable_cpythons() -> None:
    """Every CPython a Debian source package names (3.10 and 3.12 are in no suite),
    free-threaded builds from 3.13 on, on every architecture. Whether this machine's mirror
    serves each source is probed when planning (tests/test_source_probe.py), not written here."""
    want = ["3.9", "3.11", "3.13", "3.13t", "3.14", "3.14t", "3.15", "3.15t"]
    for suite, debian in (("bullseye", "3.9"), ("bookworm", "3.11")):
        defn = definition.load_suite(suite)
        offered = [definition.version_of(t) for t in defn.available()]
        assert offered == sorted(
            {debian, *want}, key=lambda v: definition.version_key(definition.normalize_python(v))
        )
        assert not defn.unavailable
        for tag, source in defn.source_pythons.items():
            assert source.free_threaded == tag.endswith("t")
            assert source.package == f"python{definition.version_of(tag).rstrip('t')}"
            assert source.suite == {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}.get(
                definition.version_of(tag).rstrip("t"), "forky"
            )


def test_python_tags_are_normalized_and_checked() -> None:
    defn = definition.load_suite("bullseye")
    got = definition.resolve_pythons(defn, "aarch64", ("3.11", "cp39"))
    assert got == ("cp39-cp39", "cp311-cp311")
    assert definition.normalize_python("3.13t") == "cp313-cp313t"
    assert definition.normalize_python("cp313t") == "cp313-cp313t"
    assert definition.normalize_python("cp313-cp313t") == "cp313-cp313t"
    assert definition.normalize_python("cp313-cp313") == "cp313-cp313"
    assert definition.version_of("cp314-cp314t") == "3.14t"
    with pytest.raises(ConfigError, match="cp312"):
        definition.resolve_pythons(defn, "x86_64", ("cp312",))
    with pytest.raises(ConfigError):
        definition.normalize_python("pypy39")


def test_free_threaded_flag_must_match_the_tag(definitions_copy: Path) -> None:
    _replace(
        definitions_copy / "bullseye.yaml",
        "cp313-cp313t: {suite: trixie, package: python3.13, free_threaded: true}",
        "cp313-cp313t: {suite: trixie, package: python3.13}",
    )
    with pytest.raises(ConfigError, match=r"bullseye.yaml.*cp313-cp313t.*free_threaded"):
        definition.load_suite("bullseye")


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
        # the suite's glibc, or (forky, glibc 2.43) the newest policy auditwheel knows
        version = tuple(int(x) for x in policy.split("_")[1:])
        assert version <= tuple(int(x) for x in glibc.split("."))
        assert policy == "manylinux_" + glibc.replace(".", "_") or suite == "forky"
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


def test_rootfs_tarball_is_plain_tar_and_its_root_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tarball is written uncompressed (gzip was on the first run's critical path) and the
    debootstrap tree is deleted by a thread after the tarball is in place."""
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(rootfs, "mmdebstrap_command", lambda *_a: None)  # the fake below runs
    fake = tmp_path / "fake-debootstrap"  # makes a tiny root where debootstrap would
    fake.write_text(
        '#!/bin/sh\nfor a; do root=$a; done\nmkdir -p "$root/etc" "$root/proc/1"\n'
        'echo bullseye > "$root/etc/debian_version"; touch "$root/proc/1/x"\n'
    )
    fake.chmod(0o755)
    path = rootfs.tarball_path("bullseye", archs.get("x86_64"), "k" * 64)
    path.parent.mkdir(parents=True)
    rootfs._make_tarball(str(fake), "bullseye", archs.get("x86_64"), path, lambda _l: None)
    assert path.suffix == ".tar"
    with tarfile.open(path, "r:") as tar:  # "r:" refuses a compressed archive
        names = tar.getnames()
    assert "./etc/debian_version" in names and "./proc/1/x" not in names
    deadline = time.monotonic() + 10
    while any(p.name.startswith(".debootstrap-") for p in path.parent.iterdir()):
        assert time.monotonic() < deadline, "the debootstrap tree was not removed"
        time.sleep(0.05)


def test_failed_debootstrap_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(rootfs, "mmdebstrap_command", lambda *_a: None)  # the fake below runs
    fake = tmp_path / "fake-debootstrap"
    fake.write_text("#!/bin/sh\necho 'E: cannot download packages'\nexit 1\n")
    fake.chmod(0o755)
    path = rootfs.tarball_path("bullseye", archs.get("x86_64"), "k" * 64)
    path.parent.mkdir(parents=True)
    with pytest.raises(rootfs.OrchError, match="download packages"):
        rootfs._make_tarball(str(fake), "bullseye", archs.get("x86_64"), path, lambda _l: None)
    assert list(path.parent.iterdir()) == []


def _fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *present: str) -> None:
    """debootstrap's script with a default mirror, its functions, and `present` on PATH."""
    script = tmp_path / "debootstrap"
    script.write_text('#!/bin/sh\nDEF_MIRROR="http://mirror.invalid/debian"\n')
    functions = tmp_path / "functions"
    functions.write_text("setup_merged_usr() { :; }\n")
    monkeypatch.setattr(rootfs, "DEBOOTSTRAP_SCRIPT", script)
    monkeypatch.setattr(rootfs, "DEBOOTSTRAP_FUNCTIONS", functions)
    monkeypatch.setattr(shutil, "which", lambda n: f"/usr/bin/{n}" if n in present else None)


def test_mmdebstrap_makes_debootstraps_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the suite's main from debootstrap's mirror (mmdebstrap would add -updates and
    -security for a stable suite: newer versions), minbase, merged /usr by the hook."""
    _fake_tools(tmp_path, monkeypatch, "mmdebstrap")
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    cmd = rootfs.mmdebstrap_command("bullseye", archs.get("x86_64"), tmp_path / "root")
    assert cmd is not None and cmd[0] == "/usr/bin/mmdebstrap"
    assert cmd[-1] == "deb http://mirror.invalid/debian bullseye main"
    assert cmd[-3:-1] == ["bullseye", str(tmp_path / "root")]
    assert {"--variant=minbase", "--architectures=amd64", "--format=directory"} <= set(cmd)
    hook = next(a for a in cmd if a.startswith("--setup-hook="))
    assert "ARCH=amd64 CODENAME=bullseye" in hook and hook.endswith("setup_merged_usr")
    # dpkg without fsync while the root is made, and that setting not left in the root
    assert "--dpkgopt=force-unsafe-io" in cmd
    assert '--customize-hook=rm -f "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"' in cmd
    assert cmd.index("--dpkgopt=force-unsafe-io") < cmd.index("bullseye")  # options first
    # a foreign root needs arch-test, else debootstrap makes it
    assert rootfs.mmdebstrap_command("bullseye", archs.get("aarch64"), tmp_path) is None
    _fake_tools(tmp_path, monkeypatch, "mmdebstrap", "arch-test")
    assert rootfs.mmdebstrap_command("bullseye", archs.get("aarch64"), tmp_path) is not None


def test_kit_roots_use_mmdebstrap_with_their_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The native kits' roots (ccache, auditwheel): mmdebstrap's call plus --include, and
    debootstrap's when mmdebstrap is not installed."""
    x86, root = archs.get("x86_64"), tmp_path / "root"
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    _fake_tools(tmp_path, monkeypatch, "mmdebstrap")
    cmd = rootfs.minbase_command("/usr/sbin/debootstrap", "bullseye", x86, root, ("ccache",))
    plain = rootfs.mmdebstrap_command("bullseye", x86, root)
    assert plain is not None and cmd == [plain[0], "--include=ccache", *plain[1:]]
    _fake_tools(tmp_path, monkeypatch)  # mmdebstrap not installed
    cmd = rootfs.minbase_command("/usr/sbin/debootstrap", "bullseye", x86, root, ("a", "b"))
    assert cmd == [
        "/usr/sbin/debootstrap",
        "--variant=minbase",
        "--arch=amd64",
        "--include=a,b",
        "bullseye",
        str(root),
    ]


def test_debootstrap_when_mmdebstrap_cannot_make_the_same_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x86 = archs.get("x86_64")
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    _fake_tools(tmp_path, monkeypatch)  # not installed
    assert rootfs.mmdebstrap_command("bullseye", x86, tmp_path) is None
    _fake_tools(tmp_path, monkeypatch, "mmdebstrap")
    forced = options.EnvSettings.from_environ({options.ROOTFS_TOOL: "debootstrap"})
    assert options.EnvSettings.from_environ({}).rootfs_tool == "auto"
    monkeypatch.setattr(options, "env", lambda: forced)
    assert rootfs.mmdebstrap_command("bullseye", x86, tmp_path) is None  # asked for
    monkeypatch.undo()
    _fake_tools(tmp_path, monkeypatch, "mmdebstrap")
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    monkeypatch.setattr(rootfs, "DEBOOTSTRAP_SCRIPT", tmp_path / "absent")  # no mirror known
    assert rootfs.mmdebstrap_command("bullseye", x86, tmp_path) is None


def test_rootfs_names_keep_the_builder_definition() -> None:
    """The base ADDs the plain tarball; the builder's Dockerfile still names the old file, so
    its hash, and every compiled interpreter's key, did not change."""
    local_dir = definition.definition_dir()
    assert f"ADD {rootfs.CONTEXT_NAME} /" in (local_dir / definition.DOCKERFILE).read_text()
    builder = (local_dir / definition.BUILDER_DOCKERFILE).read_text()
    assert f"ADD {local.BUILDER_ROOTFS_NAME} /" in builder


def test_a_base_variant_caches_only_from_its_sibling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder ADDs the same root: a variant's build must not match that layer (then
    miss every later step), so the other variant, once built, is its only cache source."""
    base = definition.plan_base(definition.load_suite("bullseye"), archs.get("x86_64"))
    present = {base.ref("build")}
    calls: list[tuple[str, list[str]]] = []

    def build(_ctx: Path, tag: str, **kwargs: Any) -> engine.ImageInfo:
        calls.append((tag, list(kwargs["cache_from"])))
        present.add(tag)
        return engine.ImageInfo(tag, "sha256:0", "amd64", "", {}, {}, ())

    monkeypatch.setattr(
        engine, "inspect_image", lambda ref: _image(ref) if ref in present else None
    )
    monkeypatch.setattr(engine, "build_image", build)
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(b"")
    phases = local.Phases(None, lambda _l: None)
    local._build_base(base, "runtime", tarball, phases)
    assert calls == [(base.ref("runtime"), [base.ref("build")])]
    present.clear()
    local._build_base(base, "build", tarball, phases)  # nothing built yet: no restriction
    assert calls[-1] == (base.ref("build"), [])


def _image(ref: str) -> engine.ImageInfo:
    return engine.ImageInfo(ref, "sha256:0", "amd64", "", {}, {}, ())


def test_stale_images_are_those_whose_definition_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = definition.plan_image("x86_64")

    def image(ref: str, **extra: str) -> engine.ImageInfo:
        labels = {**plan.labels("build"), **extra}
        return engine.ImageInfo(ref, "sha256:0", "amd64", "", labels, {}, ())

    current = image(plan.ref("build"))
    old = image(plan.ref("build").split(":")[0] + ":000000000000")
    gone = image("orch-local/manylinux_2_99_x86_64:000000000000", **{"io.orch.suite": "gone"})
    builder = definition.plan_builder(plan.defn, plan.arch)
    builder_labels = {"io.orch.suite": "bullseye", "io.orch.arch": "x86_64"}
    fresh = engine.ImageInfo(builder.ref, "sha256:1", "amd64", "", builder_labels, {}, ())
    stale = engine.ImageInfo(
        builder.ref.split(":")[0] + ":000000000000", "sha256:2", "amd64", "", builder_labels, {}, ()
    )
    by_label = {
        "io.orch.image=local": [current, old, gone],
        f"io.orch.image={local.BUILDER_LABEL}": [fresh, stale],
    }
    monkeypatch.setattr(engine, "list_images", lambda label: by_label[label])
    assert local.stale_local_images() == sorted([old.ref, gone.ref, stale.ref])


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


def test_interrupted_build_stops_the_compiles_it_waits_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while interpreters compile in worker threads: their containers are stopped
    (stoppers), so `build-local` ends promptly and leaves no compile container running."""
    import threading

    plan = definition.plan_image("aarch64", "bullseye", ("cp311-cp311", "cp313-cp313"))
    assert len(plan.interpreters) == 2
    stopped = threading.Event()

    def compile_one(interp: definition.InterpreterPlan, *_args: object) -> object:
        if interp.tag == "cp311-cp311":
            raise KeyboardInterrupt  # as the main thread's f.result() sees a Ctrl-C
        with local.stoppers.stoppable(stopped.set):
            if not stopped.wait(20):  # a compile container that nobody removes
                raise AssertionError("the other compile was not stopped")
        raise EnvironmentProblem("stopped")

    monkeypatch.setattr(local, "_rootfs", lambda *_a: Path("root.tar"))
    monkeypatch.setattr(local, "_ensure_base", lambda *_a: None)
    monkeypatch.setattr(local, "_ensure_builder", lambda *_a: None)
    monkeypatch.setattr(local, "_compile_one", compile_one)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        local._build(plan, "build", local.Phases(), False, False, (None, None))
    assert stopped.is_set() and time.monotonic() - started < 10
