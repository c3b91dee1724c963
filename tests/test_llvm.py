"""The LLVM accelerator (orchestrator/emulation/llvm_root.py and its planning in accel.py):
a native clang compiling for the container's architecture against the image's own GCC.

Unit tests need nothing (no Docker). The Docker tests (marked docker, emulated; opt-in with
ORCH_TEST_LLVM=1) build the LLVM root once per machine (in $ORCH_CROSS_DIR, next to the
cross roots) and use the local ppc64le bookworm image, where no cross gcc matches the
image's and LLVM is the fast path; the C/C++ project's LLVM-against-plain comparison runs
for every emulated architecture (aarch64, armv7l, ppc64le, s390x), and the multi-deps one
too (slow, plain QEMU included) when ORCH_TEST_LIBRARY_MIRROR holds its sources.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.emulation import accel, llvm_root
from orchestrator.emulation.accel import Accel, Fallback
from orchestrator.emulation.cross_root import HOST_LIBDIR
from orchestrator.emulation.llvm_root import GccInstall, LlvmRoot
from orchestrator.errors import ConfigError, EnvironmentProblem
from tests.support.run import EXAMPLES, orch

# `gcc -v` "Configured with" lines of the images' compilers (abridged to the flags that
# matter here, as printed by Debian's gcc in the local images and by the pypa toolsets).
DEBIAN_ARMHF = (
    "Configured with: ../src/configure -v --enable-multiarch --disable-sjlj-exceptions "
    "--with-arch=armv7-a --with-fpu=vfpv3-d16 --with-float=hard --with-mode=thumb "
    "--target=arm-linux-gnueabihf"
)
DEBIAN_PPC64EL = (
    "Configured with: ../src/configure -v --with-cpu=power8 --enable-targets=powerpcle-linux "
    "--with-long-double-128 --target=powerpc64le-linux-gnu"
)
DEBIAN_S390X = "Configured with: ../src/configure -v --with-arch=z196 --with-tune=z15"
PYPA_PPC64LE = (
    "Configured with: ../configure --prefix=/opt/rh/gcc-toolset-14/root/usr "
    "--with-cpu-32=power8 --with-tune-32=power8 --with-cpu-64=power8 --with-tune-64=power8 "
    "--with-long-double-128 --with-long-double-format=ibm"
)


def _root(
    tmp_path: Path, lld: tuple[str, ...] = ("aarch64", "ppc64le", "s390x", "armv7l")
) -> LlvmRoot:
    return LlvmRoot(
        path=tmp_path / "root",
        key="k" * 64,
        llvm_version="19",
        clang_version="19.1.7",
        package_version="1:19.1.7-3~deb12u1",
        loader="usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        dash_version="0.5.12-2",
        lld_targets=lld,
    )


def _debian_gcc(
    triplet: str = "powerpc64le-linux-gnu", v: str = DEBIAN_PPC64EL, gxx: str = "12.2.0"
) -> GccInstall:
    answers = {
        "gxx": gxx,  # "": the image has no g++ (the CPython builder)
        "dumpmachine": triplet,
        "libgcc": f"/usr/lib/gcc/{triplet}/12/libgcc.a",
        "version": "12.2.0",
        "dumpversion": "12",
        "multiarch": triplet,
        "v": v,
    }
    gcc = llvm_root.gcc_install(answers, {})
    assert gcc is not None
    return gcc


# --- definition and root ------------------------------------------------------------------


def test_definition_names_debian_llvm_packages() -> None:
    defn = llvm_root.load_definition()
    assert defn.suite == "bookworm" and defn.host_arch == "amd64"
    assert int(defn.llvm_version) >= 19  # the first lld that links s390x
    v = defn.llvm_version
    assert {f"clang-{v}", f"lld-{v}", f"llvm-{v}"} <= set(defn.package_list())


def test_malformed_definition_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "llvm").mkdir()
    (tmp_path / "llvm" / "bookworm.yaml").write_text("suite: bookworm\n")
    monkeypatch.setattr("orchestrator.images.definition.images_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match=r"bookworm\.yaml.*llvm_version"):
        llvm_root.load_definition()
    (tmp_path / "llvm" / "bookworm.yaml").write_text(
        "suite: bookworm\nhost_arch: amd64\nllvm_version: latest\npackages: [clang]\n"
    )
    with pytest.raises(ConfigError, match="major release number"):
        llvm_root.load_definition()


def test_root_key_follows_the_definition() -> None:
    defn = llvm_root.load_definition()
    edited = llvm_root.LlvmDefinition(**{**defn.__dict__, "text": defn.text + "\n# edited\n"})
    assert llvm_root.root_key(defn) == llvm_root.root_key(defn)
    assert llvm_root.root_key(edited) != llvm_root.root_key(defn)


def test_lld_targets_from_its_answers() -> None:
    unknown = "ld.lld: error: unknown emulation: elf64_s390"
    answers = dict.fromkeys(llvm_root.LLD_EMULATIONS.values(), "ld.lld: error: no input files")
    assert llvm_root.lld_targets(answers) == list(llvm_root.LLD_EMULATIONS)
    assert "s390x" not in llvm_root.lld_targets({**answers, "elf64_s390": unknown})  # LLVM < 18
    assert llvm_root.lld_targets({}) == []


def test_parse_clang_version() -> None:
    banner = "Debian clang version 19.1.7 (3~deb12u1)\nTarget: x86_64-pc-linux-gnu\n"
    assert llvm_root.parse_clang_version(banner) == "19.1.7"
    with pytest.raises(Exception, match="unexpected clang --version"):
        llvm_root.parse_clang_version("gcc (Debian 12.2.0-14) 12.2.0")


def test_library_links_into_the_root_become_hard_links(tmp_path: Path) -> None:
    """Only usr/lib/x86_64-linux-gnu is mounted at its own path: a relative link leaving it
    (../llvm-19/lib/...) would dangle in the container."""
    root = tmp_path / "root"
    libdir = root / "usr/lib/x86_64-linux-gnu"
    (root / "usr/lib/llvm-19/lib").mkdir(parents=True)
    libdir.mkdir(parents=True)
    (root / "usr/lib/llvm-19/lib/libclang-cpp.so.19").write_text("clang-cpp")
    (libdir / "libLLVM.so.19.1").write_text("llvm")
    (libdir / "libclang-cpp.so.19").symlink_to("../llvm-19/lib/libclang-cpp.so.19")
    (libdir / "libLLVM-19.so").symlink_to("libLLVM.so.19.1")  # stays inside: kept
    (libdir / "dangling.so").symlink_to("../nowhere/x.so")
    llvm_root.localize_library_links(libdir)
    moved = libdir / "libclang-cpp.so.19"
    assert not moved.is_symlink() and moved.read_text() == "clang-cpp"
    assert moved.stat().st_ino == (root / "usr/lib/llvm-19/lib/libclang-cpp.so.19").stat().st_ino
    assert os.readlink(libdir / "libLLVM-19.so") == "libLLVM.so.19.1"
    assert (libdir / "dangling.so").is_symlink()


# --- the image's GCC ----------------------------------------------------------------------


def test_debian_gcc_is_the_system_one() -> None:
    gcc = _debian_gcc()
    assert gcc.prefix == "/usr" and gcc.triplet == "powerpc64le-linux-gnu"
    assert gcc.version == "12.2.0" and gcc.dumpversion == "12"
    assert gcc.flags == ("-mcpu=power8",)
    assert gcc.describe() == "gcc 12.2.0"


def test_pypa_gcc_toolset_layouts() -> None:
    """pypa's images put GCC in a Red Hat toolset (DEVTOOLSET_ROOTPATH, e.g.
    /opt/rh/gcc-toolset-14/root on manylinux_2_28/_2_34, /opt/rh/devtoolset-10/root on
    manylinux2014) with <root>/usr/bin first on PATH; pypa's own clang helper passes
    --gcc-toolchain=$DEVTOOLSET_ROOTPATH/usr. Not runnable here (no registry): the layout
    as gcc reports it is what the detection reads."""
    cases = {
        ("aarch64-redhat-linux", "/opt/rh/gcc-toolset-14/root"): "/opt/rh/gcc-toolset-14/root/usr",
        ("ppc64le-redhat-linux", "/opt/rh/devtoolset-10/root"): "/opt/rh/devtoolset-10/root/usr",
        ("s390x-ibm-linux-gnu", "/opt/rh/gcc-toolset-14/root"): "/opt/rh/gcc-toolset-14/root/usr",
    }
    for (triplet, toolset), prefix in cases.items():
        answers = {
            "dumpmachine": triplet,
            "libgcc": f"{prefix}/lib/gcc/{triplet}/14/libgcc.a",
            "version": "14.2.1",
            "v": PYPA_PPC64LE,
        }
        gcc = llvm_root.gcc_install(answers, {"DEVTOOLSET_ROOTPATH": toolset})
        assert gcc is not None and gcc.prefix == prefix, triplet
        assert gcc.describe() == f"gcc 14.2.1 in {prefix}"
        assert gcc.flags == ("-mcpu=power8", "-mabi=ibmlongdouble")
        # gcc could not name its libgcc: the toolset variable still places it
        blind = llvm_root.gcc_install(
            {**answers, "libgcc": "libgcc.a"}, {"DEVTOOLSET_ROOTPATH": toolset + "/"}
        )
        assert blind is not None and blind.prefix == prefix


def test_no_gcc_means_no_llvm() -> None:
    assert llvm_root.gcc_install({"dumpmachine": "", "version": ""}, {}) is None
    # gcc answers but neither its libgcc nor a toolset variable says where it lives
    lost = {"dumpmachine": "aarch64-linux-gnu", "version": "10.2.1", "libgcc": "libgcc.a"}
    assert llvm_root.gcc_install(lost, {}) is None


def test_configured_defaults_become_clang_flags() -> None:
    assert llvm_root.configured_flags(DEBIAN_ARMHF) == (
        "-march=armv7-a",
        "-mfpu=vfpv3-d16",
        "-mfloat-abi=hard",
        "-mthumb",
    )
    assert llvm_root.configured_flags(DEBIAN_S390X) == ("-march=z196",)  # not --with-tune
    assert llvm_root.configured_flags("gcc version 10.2.1 (Debian 10.2.1-6)") == ()


def test_clang_targets() -> None:
    assert llvm_root.clang_target("aarch64", "aarch64-linux-gnu") == "aarch64-unknown-linux-gnu"
    assert llvm_root.clang_target("ppc64le", "ppc64le-redhat-linux") == (
        "powerpc64le-unknown-linux-gnu"
    )
    assert llvm_root.clang_target("armv7l", "arm-linux-gnueabihf") == (
        "armv7-unknown-linux-gnueabihf"
    )
    assert llvm_root.clang_target("aarch64", "aarch64-alpine-linux-musl") == (
        "aarch64-unknown-linux-musl"
    )


# --- wrappers -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _compat_archive_recorded(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str]]:
    """The unit tests' roots hold no clang: the libstdc++ compat archive is recorded (arch,
    where) instead of compiled. The Docker tests compile it for real."""
    calls: list[tuple[str, str]] = []
    if request.node.get_closest_marker("docker"):
        return calls

    def record(root: LlvmRoot, arch: str, gcc: GccInstall, home: Path) -> None:
        calls.append((arch, str(home)))

    monkeypatch.setattr(llvm_root, "compile_cxx_compat", record)
    return calls


def _wrappers(tmp_path: Path, arch: str, gcc: GccInstall, root: LlvmRoot | None = None) -> Path:
    root = root or _root(tmp_path)
    for program in ("dash", "sed", "uname"):
        (root.path / "usr/bin").mkdir(parents=True, exist_ok=True)
        (root.path / "usr/bin" / program).write_text("")
    bindir = tmp_path / "bin"
    llvm_root.write_wrappers(bindir, root, arch, gcc, "/opt/orch-llvm/orch/wrappers/t")
    return bindir


def _run_wrapper(script: Path, *args: str) -> list[str]:
    """Run a wrapper with the host's sh, clang replaced by printing its arguments."""
    text = script.read_text().replace("exec /opt/orch-llvm/usr/lib/llvm-19/bin/", "printf '%s\\n' ")
    proc = subprocess.run(
        ["sh", "-c", text, script.name, *args], capture_output=True, text=True, check=True
    )
    return proc.stdout.splitlines()


def test_wrapper_arguments_target_the_image(tmp_path: Path) -> None:
    gcc = _debian_gcc()
    bindir = _wrappers(tmp_path, "ppc64le", gcc)
    gcc_script = (bindir / "gcc").read_text()
    assert gcc_script.startswith("#!/opt/orch-llvm/usr/bin/dash\n")  # the root's shell
    out = _run_wrapper(bindir / "gcc", "-O2", "-c", "a b.c")
    assert out == [
        "clang",
        "--target=powerpc64le-unknown-linux-gnu",
        "--sysroot=/",
        "--gcc-toolchain=/usr",
        "--gcc-triple=powerpc64le-linux-gnu",
        "-mcpu=power8",
        "--config=/opt/orch-llvm/orch/wrappers/t/link.cfg",  # -fuse-ld=lld (link only)
        "-O2",
        "-c",
        "a b.c",  # arguments keep their words
    ]
    assert _run_wrapper(bindir / "g++", "-c", "x.cc")[0] == "clang++"
    assert _run_wrapper(bindir / "cpp", "x.h")[-2:] == ["-E", "x.h"]
    for name in (
        "cc",
        "c++",
        "gcc-12",
        "powerpc64le-linux-gnu-gcc",
        "powerpc64le-linux-gnu-g++-12",
    ):
        assert os.access(bindir / name, os.X_OK), name


def test_an_image_without_gxx_gets_no_cxx_wrappers(tmp_path: Path) -> None:
    """The CPython builder has gcc but no g++: a C++ wrapper there would let a build find a
    C++ compiler the image lacks (CPython's configure records it as CXX)."""
    with_gxx, c_only = _debian_gcc(), _debian_gcc(gxx="")
    assert with_gxx.cxx and not c_only.cxx
    root = _root(tmp_path)
    assert llvm_root.wrapper_key(root, "ppc64le", c_only) != llvm_root.wrapper_key(
        root, "ppc64le", with_gxx
    )
    bindir = _wrappers(tmp_path, "ppc64le", c_only)
    for name in ("gcc", "cc", "cpp", "gcc-12", "powerpc64le-linux-gnu-gcc"):
        assert os.access(bindir / name, os.X_OK), name
    assert (bindir / "ar").is_symlink()  # the binutils all the same
    for name in ("g++", "c++", "g++-12", "powerpc64le-linux-gnu-g++", "powerpc64le-linux-gnu-c++"):
        assert not (bindir / name).exists(), name


def test_wrapper_answers_like_the_images_gcc(tmp_path: Path) -> None:
    bindir = _wrappers(tmp_path, "ppc64le", _debian_gcc())
    assert _run_wrapper(bindir / "gcc", "-dumpmachine") == ["powerpc64le-linux-gnu"]
    assert _run_wrapper(bindir / "gcc", "-print-multiarch") == ["powerpc64le-linux-gnu"]
    assert _run_wrapper(bindir / "gcc", "-dumpversion") == ["12"]
    assert _run_wrapper(bindir / "cc", "-dumpfullversion") == ["12.2.0"]
    # --version is clang's own: CMake and meson must know which flags it takes
    assert _run_wrapper(bindir / "gcc", "--version")[-1] == "--version"
    # a flag only GCC knows is dropped, the others keep their order
    dropped = ["-flto-partition=one", "-fno-var-tracking-assignments", "-fconserve-stack"]
    out = _run_wrapper(bindir / "gcc", "-O2", *dropped, "-fno-gnu-unique", "-c", "x.c")
    assert out[-3:] == ["-O2", "-c", "x.c"] and not set(dropped) & set(out)
    assert "-march=native" in _run_wrapper(bindir / "gcc", "-march=native")  # never hidden


def test_binutils_and_linker(tmp_path: Path) -> None:
    gcc = _debian_gcc("s390x-linux-gnu", DEBIAN_S390X)
    lld19 = _wrappers(tmp_path / "a", "s390x", gcc)
    assert os.readlink(lld19 / "ar") == "/opt/orch-llvm/usr/lib/llvm-19/bin/llvm-ar"
    assert os.readlink(lld19 / "s390x-linux-gnu-ranlib").endswith("/llvm-ranlib")
    assert os.readlink(lld19 / "ld").endswith("/ld.lld")
    assert (tmp_path / "a" / "link.cfg").read_text() == (
        "-fuse-ld=lld\n-Wl,/opt/orch-llvm/orch/wrappers/t/lib/liborch-cxx-compat.a\n"
    )
    # an lld that cannot link s390x: the image's own ld links, nothing named ld is wrapped
    old = _root(tmp_path / "b", lld=("aarch64", "ppc64le"))
    no_lld = _wrappers(tmp_path / "b", "s390x", gcc, old)
    assert not (no_lld / "ld").exists() and not (no_lld / "ld.lld").exists()
    assert not any(a.startswith("--config") for a in _run_wrapper(no_lld / "gcc", "x.o"))


def test_gcc_link_defaults_go_through_a_config_file(tmp_path: Path) -> None:
    """Debian's aarch64 gcc links with --fix-cortex-a53-843419 by default: so do the
    wrappers, from a clang config file (no unused-argument warning when compiling)."""
    v = "Configured with: ../src/configure -v --enable-fix-cortex-a53-843419 --target=aarch64"
    answers = {"dumpmachine": "aarch64-linux-gnu", "version": "10.2.1", "v": v,
               "libgcc": "/usr/lib/gcc/aarch64-linux-gnu/10/libgcc.a"}  # fmt: skip
    gcc = llvm_root.gcc_install(answers, {})
    assert gcc is not None and gcc.link_flags == ("-Wl,--fix-cortex-a53-843419",)
    bindir = _wrappers(tmp_path, "aarch64", gcc)
    assert "--config=/opt/orch-llvm/orch/wrappers/t/link.cfg" in _run_wrapper(bindir / "gcc", "x.c")
    assert (tmp_path / "link.cfg").read_text() == "-fuse-ld=lld\n-Wl,--fix-cortex-a53-843419\n"
    # no link defaults and an lld that cannot link the target: no config file at all
    old = _root(tmp_path / "o", lld=())
    plain = _wrappers(tmp_path / "o", "ppc64le", _debian_gcc(), old)
    assert not any("--config" in a for a in _run_wrapper(plain / "gcc"))
    assert not (tmp_path / "o" / "link.cfg").exists()


def test_cxx_compat_archive_only_where_gcc_11s_libstdcxx_is_the_systems(
    tmp_path: Path, _compat_archive_recorded: list[tuple[str, str]]
) -> None:
    """clang -O0 keeps the never-taken std::__throw_bad_array_new_length call (GCC 11's
    libstdc++, GLIBCXX_3.4.29) that g++ folds away: images whose system GCC is 11 or newer
    get the weak hidden definition linked first (from link.cfg), so both need the same
    libstdc++. GCC 10 headers never call it; gcc-toolset links it from
    libstdc++_nonshared.a; the image's GNU ld (no lld) would need the archive last."""
    gcc12 = _debian_gcc()  # bookworm ppc64el: 12.2.0 in /usr
    assert gcc12.version == "12.2.0"
    root = _root(tmp_path / "r")
    assert llvm_root.needs_cxx_compat(root, "ppc64le", gcc12)
    bindir = _wrappers(tmp_path / "a", "ppc64le", gcc12)
    home = "/opt/orch-llvm/orch/wrappers/t"
    assert (tmp_path / "a" / "link.cfg").read_text().splitlines() == [
        "-fuse-ld=lld",
        f"-Wl,{home}/lib/liborch-cxx-compat.a",
    ]
    assert _compat_archive_recorded == [("ppc64le", str(bindir.parent))]
    gcc10 = GccInstall(**{**gcc12.__dict__, "version": "10.2.1", "dumpversion": "10"})
    toolset = GccInstall(**{**gcc12.__dict__, "prefix": "/opt/rh/gcc-toolset-14/root/usr"})
    no_gxx = GccInstall(**{**gcc12.__dict__, "cxx": False})  # the CPython builder
    odd = GccInstall(**{**gcc12.__dict__, "version": "unknown"})
    for other in (gcc10, toolset, no_gxx, odd):
        assert not llvm_root.needs_cxx_compat(root, "ppc64le", other), other
    assert not llvm_root.needs_cxx_compat(_root(tmp_path / "o", lld=()), "ppc64le", gcc12)
    _wrappers(tmp_path / "b", "ppc64le", gcc10)
    assert "compat" not in (tmp_path / "b" / "link.cfg").read_text()
    assert len(_compat_archive_recorded) == 1  # nothing compiled for GCC 10
    # the key changes with it: wrappers written before the fix are not reused
    assert llvm_root.WRAPPER_FORMAT >= 3


def test_cxx_compat_source_is_weak_hidden_and_headerless() -> None:
    src = llvm_root.CXX_COMPAT_SOURCE
    assert "#include" not in src  # compiled with -nostdinc on the host, for any target
    assert '__attribute__((weak, visibility("hidden"))) void __throw_bad_array_new_length()' in (
        src
    )
    assert "throw bad_array_new_length();" in src  # the type libstdc++'s own throws


def test_shell_tools_only_for_little_endian_targets(tmp_path: Path) -> None:
    ppc = _wrappers(tmp_path / "p", "ppc64le", _debian_gcc())
    assert os.readlink(ppc / "sh") == "/opt/orch-llvm/usr/bin/dash"
    assert not (ppc / "uname").exists()  # config.guess must see the target
    s390 = _wrappers(tmp_path / "s", "s390x", _debian_gcc("s390x-linux-gnu", DEBIAN_S390X))
    assert not (s390 / "sh").exists() and not (s390 / "sed").exists()


def test_wrappers_are_per_image_gcc(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root.path / "usr/bin").mkdir(parents=True)
    gcc = _debian_gcc()
    first = llvm_root.ensure_wrappers(root, "ppc64le", gcc)
    assert first == llvm_root.ensure_wrappers(root, "ppc64le", gcc)  # written once
    assert (root.path / first / "gcc").is_file()
    other = GccInstall(**{**gcc.__dict__, "prefix": "/opt/rh/gcc-toolset-14/root/usr"})
    second = llvm_root.ensure_wrappers(root, "ppc64le", other)
    assert second != first
    assert (
        "--gcc-toolchain=/opt/rh/gcc-toolset-14/root/usr"
        in (root.path / second / "gcc").read_text()
    )
    assert not list((root.path / llvm_root.WRAPPERS_SUBDIR).glob(".w-*"))  # no leftovers


# --- selection ----------------------------------------------------------------------------


def _accel(compiler: str, why: str = "") -> Accel:
    return Accel(
        arch="ppc64le",
        triplet="powerpc64le-linux-gnu",
        root=Path("/nowhere"),
        mounts=[],
        env={},
        image_path="/usr/bin",
        gcc_version="12.2.0",
        package_version="1:19.1.7-3~deb12u1",
        key="0" * 64,
        native_tools=True,
        compiler=compiler,
        wrapper_dir="/opt/orch-llvm/orch/wrappers/x/bin",
        clang_version="19.1.7" if compiler == accel.LLVM else "",
        why=why,
    )


class _Planners:
    """Stand-ins for the two planners: each either applies or says why not."""

    def __init__(self, cross: str | None, llvm: str | None) -> None:
        self.answers = {accel.GCC_CROSS: cross, accel.LLVM: llvm}
        self.calls: list[str] = []

    def make(self, compiler: str):  # type: ignore[no-untyped-def]
        def plan(
            arch: str, image: engine.ImageInfo, log: object, factory: object, why: str
        ) -> Accel:
            self.calls.append(compiler)
            reason = self.answers[compiler]
            if reason is not None:
                raise accel._NotApplicable(reason)
            return _accel(compiler, why)

        return plan


def _select(
    monkeypatch: pytest.MonkeyPatch, mode: str, cross: str | None, llvm: str | None
) -> tuple[Accel | Fallback, list[str]]:
    planners = _Planners(cross, llvm)
    monkeypatch.setattr(
        accel, "_PLANNERS", tuple((c, planners.make(c)) for c in (accel.GCC_CROSS, accel.LLVM))
    )
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    image = engine.ImageInfo("img:1", "sha256:1", "ppc64le", "", {}, {}, ())
    return accel.plan_accel("ppc64le", image, mode), planners.calls


def test_auto_prefers_the_exact_cross_gcc(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, calls = _select(monkeypatch, "auto", None, None)
    assert isinstance(plan, Accel) and plan.compiler == "gcc-cross" and calls == ["gcc-cross"]


def test_auto_falls_to_llvm_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, calls = _select(monkeypatch, "auto", "the image's gcc-12 is 12.2.0-14+deb12u1", None)
    assert calls == ["gcc-cross", "llvm"]
    assert isinstance(plan, Accel) and plan.compiler == "llvm"
    assert plan.why == "the image's gcc-12 is 12.2.0-14+deb12u1"
    text = plan.describe()
    assert "clang 19.1.7 for powerpc64le-linux-gnu" in text and "gcc 12.2.0" in text
    assert "(no cross gcc: the image's gcc-12 is 12.2.0-14+deb12u1)" in text
    assert plan.label == "accelerated (clang 19.1.7)"
    assert plan.cache_tag.startswith("llvm-19.1.7-")
    assert _accel("gcc-cross").cache_tag != plan.cache_tag


def test_auto_falls_to_plain_with_both_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, _ = _select(monkeypatch, "auto", "no cross toolchain defined", "the image has no gcc")
    assert plan == Fallback(
        "no cross gcc: no cross toolchain defined; no LLVM: the image has no gcc"
    )
    with pytest.raises(
        EnvironmentProblem, match=r"--emulation=accelerated\).*no LLVM: the image has no gcc"
    ):
        _select(monkeypatch, "accelerated", "x", "the image has no gcc")


def test_explicit_compiler_is_that_or_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, calls = _select(monkeypatch, "llvm", None, None)
    assert isinstance(plan, Accel) and plan.compiler == "llvm" and calls == ["llvm"]
    assert plan.why == ""  # nothing was tried before it
    with pytest.raises(EnvironmentProblem, match=r"--emulation=gcc-cross\): versions differ"):
        _select(monkeypatch, "gcc-cross", "versions differ", None)
    plain, calls = _select(monkeypatch, "plain", None, None)
    assert plain == Fallback("--emulation=plain") and calls == []


def test_native_architecture_is_never_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archs, "host_arch", lambda: "x86_64")
    image = engine.ImageInfo("img:1", "sha256:1", "amd64", "", {}, {}, ())
    for mode in ("llvm", "gcc-cross", "accelerated"):
        plan = accel.plan_accel("x86_64", image, mode)
        assert isinstance(plan, Fallback) and "natively" in plan.reason


def test_cli_accepts_every_mode() -> None:
    for mode in accel.MODES:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", "build", "--emulation", mode, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "orchestrator", "build", "--emulation", "clang"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "gcc-cross" in bad.stderr


# --- in the ppc64le bookworm build image (docker, emulated) -------------------------------
# No cross gcc matches bookworm's gcc-12 (docs/emulation.md): LLVM is the fast path there.

ARCH, SUITE, POLICY, TAG = "ppc64le", "bookworm", "manylinux_2_36", "cp311"
# Opt-in: the LLVM root (about 640 MB, 3 min to build on a loaded 2-core host) and the
# ppc64le bookworm images (emulated debootstrap, ~20 min) are more than a CI run should pay.
LLVM_OPT_IN = os.environ.get("ORCH_TEST_LLVM") == "1"
needs_x86 = pytest.mark.skipif(
    archs.host_arch() != "x86_64" or not LLVM_OPT_IN,
    reason="set ORCH_TEST_LLVM=1 (x86_64 hosts: the LLVM root is amd64)",
)


@pytest.fixture(scope="module")
def ppc_build() -> engine.ImageInfo:
    from orchestrator.images.local import ensure_local_image

    ensure_local_image(ARCH, "runtime", suite=SUITE)
    return ensure_local_image(ARCH, "build", suite=SUITE)


@pytest.fixture(scope="module")
def ppc_llvm(ppc_build: engine.ImageInfo) -> Accel:
    plan = accel.plan_accel(ARCH, ppc_build, "auto")
    assert isinstance(plan, Accel), plan
    return plan


def _sh(image: engine.ImageInfo, plan: Accel | None, script: str) -> str:
    env = accel.apply(plan, {"PATH": image.env.get("PATH", accel.DEFAULT_PATH)})
    container = engine.create_container(
        image.ref,
        env=env,
        mounts=plan.mounts if plan else [],
        platform=engine.image_platform_string(image),
        labels={engine.LABEL_JOB: "test-llvm"},
    )
    try:
        chunks: list[bytes] = []
        res = engine.exec_stream(
            container, ["bash", "-euo", "pipefail", "-c", script], chunks.append
        )
        out = b"".join(chunks).decode(errors="replace")
        assert res.exit_code == 0, out[-4000:]
        return out
    finally:
        engine.remove_container(container)


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_auto_chooses_llvm_where_no_cross_gcc_matches(ppc_llvm: Accel) -> None:
    assert ppc_llvm.compiler == "llvm"
    assert "no cross toolchain defined for ppc64le on bookworm" in ppc_llvm.why
    text = ppc_llvm.describe()
    assert text.startswith("accelerated: native clang 19.") and "powerpc64le-linux-gnu" in text
    assert "gcc 12.2.0 headers and runtime and shell tools" in text


CXX_O0_LIB = r"""
#include <string>
#include <vector>
std::string pad(const std::string &s, unsigned n) {
    std::vector<char> buf(n, '.');
    return s + std::string(buf.data(), buf.size());
}
"""
CXX_O0_PROG = r"""
#include <cstdint>
#include <cstdio>
#include <memory>
#include <new>
int main() {
    try { std::allocator<long>().allocate(SIZE_MAX / 4); }
    catch (const std::bad_array_new_length &e) { std::printf("caught %s\n", e.what()); }
    return 0;
}
"""


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_unoptimised_cxx_needs_the_libstdcxx_gcc_needs(
    ppc_build: engine.ImageInfo, ppc_llvm: Accel
) -> None:
    """At -O0 (setuptools compiles C++ without -O2) clang keeps the never-taken call to
    std::__throw_bad_array_new_length (GLIBCXX_3.4.29) in std::vector<char>'s allocation,
    which g++ folds away: without the compat archive the module needs a newer libstdc++ and
    the wheel is tagged manylinux_2_34, not 2_31. With it: the same libstdc++ versions as
    g++'s module, the symbol neither imported nor exported, and a real throw still throws
    std::bad_array_new_length."""
    script = f"""
cd /tmp && cat > lib.cc <<'EOF'
{CXX_O0_LIB}
EOF
cat > prog.cc <<'EOF'
{CXX_O0_PROG}
EOF
versions() {{ /usr/bin/readelf -V --wide "$1" | grep -o 'GLIBCXX_[0-9.]*' | sort -u | xargs; }}
g++ -O0 -fPIC -shared -o lib-clang.so lib.cc
/usr/bin/g++ -O0 -fPIC -shared -o lib-gcc.so lib.cc
echo "clang=$(versions lib-clang.so)"
echo "gcc=$(versions lib-gcc.so)"
echo "dynsym=$(/usr/bin/nm -D lib-clang.so | grep -c throw_bad_array_new_length || true)"
g++ -O0 -c lib.cc -o lib-clang.o
echo "calls=$(/usr/bin/nm lib-clang.o | grep -c 'U _ZSt28__throw_bad_array_new_lengthv' || true)"
g++ -O0 -o prog prog.cc && ./prog | sed 's/^/run=/'
echo "prog-imports=$(/usr/bin/nm -D prog | grep -c throw_bad_array_new_length || true)"
"""
    out = _sh(ppc_build, ppc_llvm, script)
    got = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in out.splitlines() if "=" in ln}
    assert got["calls"] == "1"  # clang's -O0 object does call it (the cause)...
    assert got["clang"] == got["gcc"], out  # ...the module needs what g++'s needs
    assert "GLIBCXX_3.4.29" not in got["clang"]
    assert got["dynsym"] == "0"  # bound inside the module, not exported
    assert got["run"] == "caught std::bad_array_new_length"
    assert got["prog-imports"] == "0"


CXX_PROBE = r"""
#include <cstdio>
#include <stdexcept>
#include <string>
std::string twice(const std::string &s) { return s + s; }
int main() {
    try { throw std::runtime_error(twice("ab")); }
    catch (const std::exception &e) { std::printf("%d %s\n", _GLIBCXX_USE_CXX11_ABI, e.what()); }
    return 0;
}
"""


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_clang_uses_the_images_gcc_and_its_cxx_abi(
    ppc_build: engine.ImageInfo, ppc_llvm: Accel
) -> None:
    """clang++ compiles against the image's libstdc++ headers and links its libstdc++,
    crt objects and libgcc, with the same _GLIBCXX_USE_CXX11_ABI as the image's g++."""
    script = f"""
cd /tmp && cat > p.cc <<'EOF'
{CXX_PROBE}
EOF
echo "which=$(command -v g++)"
g++ -O2 -o p-clang p.cc && ./p-clang | sed 's/^/clang=/'
/usr/bin/g++ -O2 -o p-gcc p.cc && ./p-gcc | sed 's/^/gcc=/'
g++ -O2 -Wall -Werror -c p.cc -o p-clang.o 2> warnings.txt && /usr/bin/g++ -O2 -c p.cc -o p-gcc.o
echo "warnings=$(wc -l < warnings.txt)"
echo "sym-clang=$(nm -C p-clang.o | grep -c 'std::__cxx11::basic_string' || true)"
echo "sym-gcc=$(nm -C p-gcc.o | grep -c 'std::__cxx11::basic_string' || true)"
echo "comment=$(readelf -p .comment p-clang | tr -s ' \\n' ' ')"
echo "needed=$(readelf -d p-clang | grep NEEDED | tr -s ' \\n' ' ')"
echo "interp=$(readelf -l p-clang | grep -o 'interpreter: [^]]*')"
echo "crt=$(g++ -print-file-name=crtbeginS.o) $(g++ -print-file-name=libstdc++.so)"
echo "machine=$(gcc -dumpmachine) $(/usr/bin/gcc -dumpmachine)"
echo "version=$(gcc -dumpversion) $(/usr/bin/gcc -dumpversion) $(gcc -dumpfullversion) $(/usr/bin/gcc -dumpfullversion)"
echo "cc=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("CC"))')"
echo "cc-resolves=$(command -v powerpc64le-linux-gnu-gcc)"
"""
    out = _sh(ppc_build, ppc_llvm, script)
    got = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in out.splitlines() if "=" in ln}
    assert got["which"] == f"{ppc_llvm.wrapper_dir}/g++"
    assert got["warnings"] == "0"  # link-only flags stay out of compile-only runs (-Werror)
    assert got["clang"] == got["gcc"] == "1 abab"  # same ABI, exceptions unwind
    assert int(got["sym-clang"]) > 0 and int(got["sym-gcc"]) > 0  # the __cxx11 string ABI
    assert "clang version 19" in got["comment"]  # clang compiled it...
    assert "GCC: (Debian 12.2.0" in got["comment"]  # ...the image's crt objects were linked
    assert "libstdc++.so.6" in got["needed"] and "libgcc_s.so.1" in got["needed"]
    assert got["interp"] == "interpreter: /lib64/ld64.so.2"
    assert got["crt"].split() == [
        "/usr/lib/gcc/powerpc64le-linux-gnu/12/crtbeginS.o",
        "/usr/lib/gcc/powerpc64le-linux-gnu/12/libstdc++.so",
    ]
    machine, image_machine = got["machine"].split()
    assert machine == image_machine == "powerpc64le-linux-gnu"
    v = got["version"].split()
    assert v[0] == v[1] == "12" and v[2] == v[3] == "12.2.0"
    assert got["cc"].startswith("powerpc64le-linux-gnu-gcc")  # Debian's Python names this...
    assert (
        got["cc-resolves"] == f"{ppc_llvm.wrapper_dir}/powerpc64le-linux-gnu-gcc"
    )  # ...and it is clang


PROJECT_TOML = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "orch-test-llvmdemo"
version = "1.0.0"

[tool.setuptools]
packages = ["llvmdemo"]
ext-modules = [
  {name = "llvmdemo._c", sources = ["llvmdemo/_c.c"]},
  {name = "llvmdemo._cxx", sources = ["llvmdemo/_cxx.cpp"], language = "c++", \
extra-compile-args = ["-fvisibility=hidden", "-fvisibility-inlines-hidden"], \
extra-link-args = ["-Wl,--version-script=exports.map"]},
]
"""
C_SOURCE = r"""
#include <Python.h>
#include <math.h>
static PyObject *hyp(PyObject *self, PyObject *args) {
    double a, b;
    if (!PyArg_ParseTuple(args, "dd", &a, &b)) return NULL;
    return PyFloat_FromDouble(hypot(a, b));
}
static PyMethodDef methods[] = {{"hyp", hyp, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_c", NULL, -1, methods};
PyMODINIT_FUNC PyInit__c(void) { return PyModule_Create(&mod); }
"""
CXX_SOURCE = r"""
#include <Python.h>
#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
static PyObject *count(PyObject *, PyObject *args) {
    const char *text;
    if (!PyArg_ParseTuple(args, "s", &text)) return nullptr;
    try {
        std::map<std::string, int> words;
        std::string s(text), w;
        for (char c : s + " ") {
            if (c == ' ') { if (!w.empty()) ++words[w]; w.clear(); } else w += c;
        }
        if (words.empty()) throw std::invalid_argument("no words");
        auto top = std::max_element(words.begin(), words.end(),
            [](auto &a, auto &b) { return a.second < b.second; });
        return Py_BuildValue("(si)", top->first.c_str(), top->second);
    } catch (const std::exception &e) {
        PyErr_SetString(PyExc_ValueError, e.what());
        return nullptr;
    }
}
static PyMethodDef methods[] = {{"count", count, METH_VARARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_cxx", nullptr, -1, methods};
PyMODINIT_FUNC PyInit__cxx(void) { return PyModule_Create(&mod); }
"""
INIT = """\
def check():
    from llvmdemo import _c, _cxx

    assert _c.hyp(3, 4) == 5.0
    assert _cxx.count("a b a") == ("a", 2)
    try:
        _cxx.count("  ")  # a C++ exception, thrown and caught across clang's code
    except ValueError as exc:
        assert str(exc) == "no words"
    else:
        raise AssertionError("no exception")
    print("llvmdemo ok")
"""
TEST_COMMAND = 'python -c "import llvmdemo; llvmdemo.check()"'


def _project(base: Path, arch: str = ARCH, policy: str = POLICY, python: str = "3.11") -> Path:
    (base / "llvmdemo").mkdir(parents=True)
    (base / "pyproject.toml").write_text(PROJECT_TOML)
    # libstdc++ gives namespace std default visibility: std:: instantiations stay exported
    # unless a version script keeps the exports to the entry point (orch audit checks it)
    (base / "exports.map").write_text("{ global: PyInit__cxx; local: *; };\n")
    (base / "llvmdemo" / "__init__.py").write_text(INIT)
    (base / "llvmdemo" / "_c.c").write_text(C_SOURCE)
    (base / "llvmdemo" / "_cxx.cpp").write_text(CXX_SOURCE)
    recipe = base / "orch.yaml"
    recipe.write_text(
        f'schema: 1\nname: llvmdemo\nproject: .\npython: ["{python}"]\nplatforms: [{policy}]\n'
        f"archs: [{arch}]\ntest:\n  imports: [llvmdemo._c, llvmdemo._cxx]\n"
        f"  command: {json.dumps(TEST_COMMAND)}\n"
    )
    return recipe


# The image family per architecture (the policy picks the image): (policy, Python).
FAMILY = {"aarch64": ("manylinux_2_31", "3.9"), "armv7l": ("manylinux_2_31", "3.9"),
          "ppc64le": ("manylinux_2_36", "3.11"), "s390x": ("manylinux_2_36", "3.11")}  # fmt: skip


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
@pytest.mark.parametrize("arch", list(FAMILY))
def test_orch_build_with_llvm_equals_plain(arch: str, tmp_path: Path) -> None:
    """A C and a C++ extension for every emulated architecture: with LLVM and with plain
    QEMU the same wheel name and tags, audit clean, the tests pass in the runtime image;
    clang compiled it (--emulation=llvm: on aarch64 and armv7l auto picks the cross gcc)."""
    from orchestrator.images.local import ensure_local_image

    policy, python = FAMILY[arch]
    suite = "bookworm" if policy == "manylinux_2_36" else "bullseye"
    ensure_local_image(arch, "runtime", suite=suite)
    image = ensure_local_image(arch, "build", suite=suite)
    assert isinstance(accel.plan_accel(arch, image, "llvm"), Accel)  # LLVM applies here
    recipe = _project(tmp_path / "project", arch, policy, python)
    tag = "cp" + python.replace(".", "")
    wheels: dict[str, Path] = {}
    for mode in ("llvm", "plain"):
        dest = tmp_path / mode
        proc = orch("build", "-f", str(recipe), "-o", str(dest), "--plain", f"--emulation={mode}")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (wheels[mode],) = dest.glob("*.whl")
        job = json.loads((dest / ".orch" / "report.json").read_text())["jobs"][0]
        assert job["verify"][0]["status"] == "passed"
        assert "llvmdemo ok" in Path(job["log"]).read_text()
        assert ("native clang 19." in Path(job["log"]).read_text()) is (mode == "llvm")
        assert not [f for f in job["audit"]["findings"] if f["severity"] == "error"]
    # Same name; repair keeps every tag auditwheel proves (manylinux_2_24_armv7l... too).
    assert wheels["llvm"].name == wheels["plain"].name
    assert wheels["llvm"].name.startswith(f"orch_test_llvmdemo-1.0.0-{tag}-{tag}-")
    assert wheels["llvm"].name.endswith(f"{policy}_{arch}.whl")
    audit = orch("audit", str(wheels["llvm"]))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    comments = _comments(wheels["llvm"])
    assert all("clang version 19" in c for c in comments.values()), comments
    assert not any("clang" in c for c in _comments(wheels["plain"]).values())


def _comments(wheel: Path) -> dict[str, str]:
    """Each extension's .comment section (compilers that produced its objects)."""
    from elftools.elf.elffile import ELFFile

    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.endswith(".so") and "/_" in name:
                elf = ELFFile(io.BytesIO(zf.read(name)))
                section = elf.get_section_by_name(".comment")
                out[name] = section.data().decode(errors="replace") if section else ""
    return out


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
@pytest.mark.parametrize("arch", list(FAMILY))
def test_multi_deps_llvm_equals_plain(arch: str, tmp_path: Path) -> None:
    """examples/multi-deps (five static dependencies, C and C++, make, autotools, CMake)
    with LLVM and with plain QEMU: the same wheel names, audit clean, tests passing."""
    from tests.test_accel import _missing_sources

    mirror = Path(os.environ.get("ORCH_TEST_LIBRARY_MIRROR", "/nonexistent"))
    missing = _missing_sources(mirror, EXAMPLES / "multi-deps") if mirror.is_dir() else ["all"]
    if missing:
        pytest.skip(f"ORCH_TEST_LIBRARY_MIRROR lacks the sources of {', '.join(missing)}")
    policy, python = FAMILY[arch]
    proj = tmp_path / "md"
    shutil.copytree(EXAMPLES / "multi-deps", proj)
    recipe = proj / "orch.yaml"
    text = recipe.read_text().replace("archs: [x86_64]", f"archs: [{arch}]")
    text = text.replace("platforms: [manylinux_2_31]", f"platforms: [{policy}]")
    recipe.write_text(text + f"mirrors:\n  - directory: {mirror}\n")
    tag = "cp" + python.replace(".", "")
    names = {}
    for mode in ("llvm", "plain"):
        dest = tmp_path / mode
        env = {"ORCH_CACHE_DIR": str(tmp_path / f"cache-{mode}")}
        proc = orch("build", "-f", str(recipe), "-o", str(dest), "--plain", "--only", f"{tag}-*",
                    f"--emulation={mode}", env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        report = json.loads((dest / ".orch" / "report.json").read_text())
        (job,) = report["jobs"]
        assert job["verify"][0]["status"] == "passed"
        assert not [f for f in job["audit"]["findings"] if f["severity"] == "error"]
        assert ("native clang" in Path(job["log"]).read_text()) is (mode == "llvm")
        names[mode] = job["wheel"]["filename"]
    assert (
        names["llvm"]
        == names["plain"]
        == (f"orch_example_depsdemo-1.0.0-{tag}-{tag}-{policy}_{arch}.whl")
    )


def test_bin_sh_is_a_native_dash_of_the_images_release_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bullseye images (dash 0.5.11) get the bullseye cross root's amd64 dash over /bin/sh
    when that root is built; another release of dash is never swapped in."""
    from orchestrator.emulation import cross_root

    monkeypatch.setenv("ORCH_CROSS_DIR", str(tmp_path / "cross"))
    root = _root(tmp_path)
    image = engine.ImageInfo(
        "img:1", "sha256:1", "arm64", "", {"io.orch.suite": "bullseye"}, {}, ()
    )
    sh = "/usr/bin/dash"
    assert (
        accel._native_shell(root, "aarch64", image, sh, "0.5.12-2") == root.path / cross_root.SHELL
    )
    assert accel._native_shell(root, "aarch64", image, sh, "0.5.11+git20200708+dd9ef66-5") is None
    defn, arch = cross_root.require_definition("aarch64", "bullseye")
    built = cross_root.root_path(defn, arch)
    built.mkdir(parents=True)
    manifest = {"arch": "aarch64", "triplet": "aarch64-linux-gnu", "key": "k", "gcc_version": "10",
                "package_version": "10", "loader": "x", "native_tools": True,
                "dash_version": "0.5.11+git20200708+dd9ef66-5"}  # fmt: skip
    (built / cross_root.MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (built / cross_root.MANIFEST).write_text(json.dumps(manifest))
    got = accel._native_shell(root, "aarch64", image, sh, "0.5.11+git20200708+dd9ef66-5")
    assert got == built / cross_root.SHELL
    assert accel._native_shell(root, "aarch64", image, sh, "0.5.10") is None  # another release
    assert accel._native_shell(root, "aarch64", image, "/usr/bin/bash", "0.5.12-2") is None
    ppc = engine.ImageInfo(
        "img:2", "sha256:2", "ppc64le", "", {"io.orch.suite": "bookworm"}, {}, ()
    )
    assert accel._native_shell(root, "ppc64le", ppc, sh, "0.5.11+git20200708+dd9ef66-5") is None


def test_configure_runs_under_the_dash_of_the_images_release_where_one_is_mounted(
    tmp_path: Path,
) -> None:
    """CONFIG_SHELL: the same-release dash mounted over /bin/sh (bullseye images: the cross
    root's, at /usr/bin/dash), not the LLVM root's bookworm dash; the LLVM root's own
    where that is the image's release or where no dash of it is at hand."""
    root = _root(tmp_path)
    gcc = _debian_gcc("arm-linux-gnueabihf")
    cross_dash = tmp_path / "bullseye-armhf" / "usr/bin/dash"
    bullseye = accel._llvm_accel(root, "armv7l", gcc, "w", accel.DEFAULT_PATH, cross_dash)
    assert bullseye.env["CONFIG_SHELL"] == "/usr/bin/dash"
    assert (str(cross_dash), "/usr/bin/dash") in [(m.source, m.target) for m in bullseye.mounts]
    own = accel._llvm_accel(
        root, "armv7l", gcc, "w", accel.DEFAULT_PATH, root.path / "usr/bin/dash"
    )
    assert own.env["CONFIG_SHELL"] == "/opt/orch-llvm/usr/bin/dash"
    none = accel._llvm_accel(root, "armv7l", gcc, "w", accel.DEFAULT_PATH, None)
    assert none.env["CONFIG_SHELL"] == "/opt/orch-llvm/usr/bin/dash"


def test_big_endian_targets_get_the_native_shell_but_not_the_text_tools(tmp_path: Path) -> None:
    root = _root(tmp_path)
    gcc = _debian_gcc("s390x-linux-gnu")
    s390x = accel._llvm_accel(
        root, "s390x", gcc, "w", accel.DEFAULT_PATH, root.path / "usr/bin/dash"
    )
    assert s390x.env["CONFIG_SHELL"].endswith("/usr/bin/dash") and not s390x.native_tools
    assert [m.target for m in s390x.mounts][-1] == "/usr/bin/dash"
    assert s390x.describe().endswith("headers and runtime and the shell")
    assert "LOCPATH" not in s390x.env
    ppc = accel._llvm_accel(root, "ppc64le", _debian_gcc(), "w", accel.DEFAULT_PATH, None)
    assert ppc.native_tools and "/usr/bin/dash" not in [m.target for m in ppc.mounts]
    assert "and shell tools" in ppc.describe()


def test_big_endian_text_tools_with_the_images_locales(tmp_path: Path) -> None:
    """s390x whose locales the root holds (same libc-bin, same /usr/lib/locale entries):
    LOCPATH names the root's little-endian copy first, the text tools are linked into
    the wrappers, and the wrapper directory (and the cache key) is another one."""
    root = _root(tmp_path)
    (root.path / "usr/bin").mkdir(parents=True)
    for program in ("dash", "sed", "grep", "mawk", "sort"):
        (root.path / "usr/bin" / program).write_text("")
    (root.path / "usr/lib/locale/C.utf8").mkdir(parents=True)
    (root.path / "var/lib/dpkg").mkdir(parents=True)
    (root.path / "var/lib/dpkg/status").write_text("Package: libc-bin\nVersion: 2.36-9\n")
    gcc = _debian_gcc("s390x-linux-gnu", DEBIAN_S390X)
    env = accel._locale_env("s390x", root.path, llvm_root.PREFIX, "2.36-9", frozenset({"C.utf8"}))
    assert env == {"LOCPATH": f"{llvm_root.PREFIX}/usr/lib/locale:/usr/lib/locale"}
    assert accel._locale_env("s390x", root.path, "/p", "2.36-8", frozenset({"C.utf8"})) is None
    assert accel._locale_env("ppc64le", root.path, "/p", "", frozenset()) == {}
    plain = llvm_root.ensure_wrappers(root, "s390x", gcc)
    tools = llvm_root.ensure_wrappers(root, "s390x", gcc, text_tools=True)
    assert plain != tools
    assert not (root.path / plain / "sed").exists()
    assert os.readlink(root.path / tools / "sed") == f"{llvm_root.PREFIX}/usr/bin/sed"
    assert os.readlink(root.path / tools / "awk") == f"{llvm_root.PREFIX}/usr/bin/mawk"
    assert not (root.path / tools / "uname").exists()  # the target shows through uname
    # little-endian keys do not move with the flag (their tools are linked anyway)
    ppc = _debian_gcc()
    assert llvm_root.wrapper_key(root, "ppc64le", ppc, True) == llvm_root.wrapper_key(
        root, "ppc64le", ppc
    )
    acc = accel._llvm_accel(root, "s390x", gcc, tools, accel.DEFAULT_PATH, None, env)
    assert acc.native_tools and acc.env["LOCPATH"] == env["LOCPATH"]
    assert acc.key == llvm_root.wrapper_key(root, "s390x", gcc, True)
    assert "and shell tools" in acc.describe()


HOST_XZ = shutil.which("xz")


def test_a_program_of_another_root_borrows_only_missing_libraries(tmp_path: Path) -> None:
    """bullseye's cmake under the LLVM root: what the root's library directory lacks is
    linked in from the program's own root; nothing present is replaced."""
    host_lzma = Path(f"/{HOST_LIBDIR}/liblzma.so.5")
    if not (HOST_XZ and host_lzma.exists() and archs.host_arch() == "x86_64"):
        pytest.skip("needs the x86_64 host's xz and liblzma")
    root = _root(tmp_path)
    libdir = root.path / HOST_LIBDIR
    libdir.mkdir(parents=True)
    (libdir / "libc.so.6").write_text("the root's own libc")
    donor = tmp_path / "cross"
    (donor / "usr/bin").mkdir(parents=True)
    (donor / HOST_LIBDIR).mkdir(parents=True)
    program = donor / "usr/bin/xz"
    shutil.copy(HOST_XZ, program)
    assert llvm_root.borrow_libraries(root, program) is False  # the donor lacks liblzma too
    assert sorted(p.name for p in libdir.iterdir()) == ["libc.so.6"]
    lzma = donor / HOST_LIBDIR / "liblzma.so.5.2.5"
    shutil.copy(host_lzma.resolve(), lzma)
    (donor / HOST_LIBDIR / "liblzma.so.5").symlink_to(lzma.name)
    (donor / HOST_LIBDIR / "libc.so.6").write_text("the donor's libc")
    assert llvm_root.borrow_libraries(root, program) is True
    assert (libdir / "liblzma.so.5").read_bytes() == lzma.read_bytes()
    assert (libdir / "libc.so.6").read_text() == "the root's own libc"
    assert sorted(p.name for p in libdir.iterdir()) == ["libc.so.6", "liblzma.so.5"]
    assert llvm_root.borrow_libraries(root, program) is True  # again: nothing to do


# --- big-endian s390x: native cmake, make, ninja and text tools -----------------------

UNICODE_FILES = {
    "/u/src/CMakeLists.txt": (
        "cmake_minimum_required(VERSION 3.13)\nproject(u C)\n"
        'file(GLOB S "${CMAKE_SOURCE_DIR}/*.c")\nlist(SORT S)\n'
        'string(TOUPPER "äbç" UP)\nstring(REGEX MATCHALL "." CH "äb")\n'
        "add_library(u STATIC ${S})\n"
        'file(WRITE ${CMAKE_BINARY_DIR}/facts "S=${S}\\nUP=${UP}\\nCH=${CH}\\n")\n'
    ),
    "/u/src/ä.c": "int a(void) { return 1; }\n",
    "/u/src/b.c": "int b(void) { return 2; }\n",
    "/u/src/w.mk": (
        "all:\n\t@echo 'one=$(wildcard /u/src/?.c)'; echo 'all=$(sort $(wildcard /u/src/*.c))'\n"
    ),
}
# Where the C locale would differ from the image's C.UTF-8: make's `?` (one character or
# one byte), `cmake -E tar` of a non-ASCII name (libarchive), sed/grep/sort on UTF-8.
UNICODE_RESULTS = (
    "cd /u && cmake -S src -B bü > /dev/null && cmake --build bü > /dev/null && cat bü/facts && "
    "ar t bü/libu.a && sha256sum bü/libu.a bü/CMakeCache.txt && make -s -f src/w.mk && "
    "cmake -G Ninja -S src -B n > /dev/null && ninja -C n > /dev/null && sha256sum n/libu.a && "
    "cmake -E tar cf /u/t.tar src && tar tf /u/t.tar | sort && "
    "printf 'ä\\nb\\na\\n' | sort | tr '\\n' ' ' && printf 'äb\\n' | grep -o '^.b' && "
    "printf 'äb\\n' | sed 's/^./X/' && printf 'äbc' | wc -m"
)
XZ = "0b54f79df85912504de0b14aec7971e3f964491af1812d83447005807513cd9e"  # 5.8.1, recipes/
XZ_BUILD = (
    "mkdir -p /x/src && tar -xJf /x/in/xz.tar.xz -C /x/src --strip-components=1 && cd /x/src && "
    "./configure --prefix=/x/p --disable-shared --with-pic --disable-doc --disable-nls "
    "> /x/configure.log && make -j2 > /x/make.log && make install > /dev/null"
)
XZ_RESULTS = "cd /x/src && sha256sum config.h; cd /x/p && find . -type f | sort | xargs sha256sum"


@pytest.fixture(scope="module")
def s390x_build() -> engine.ImageInfo:
    from orchestrator.images.local import ensure_local_image

    return ensure_local_image("s390x", "build", suite="bookworm")


@pytest.mark.docker
@pytest.mark.emulated
@needs_x86
def test_s390x_native_tools_build_what_the_emulated_ones_do(
    s390x_build: engine.ImageInfo, tmp_path: Path
) -> None:
    """Big-endian s390x, clang compiling both times: the native cmake, make, ninja and text
    tools (LOCPATH: the root's little-endian copy of the image's locales) against the
    image's emulated ones. The CMake project of test_accel (cache, system facts, try_run,
    archives, $(MAKE_HOST)) and a non-ASCII one (make's `?`, `cmake -E tar`, Ninja, sort,
    grep, sed, wc) give the same output; with the sources in ORCH_TEST_LIBRARY_MIRROR,
    snappy (CMake) and xz (autotools) install byte-identical files."""
    from tests.test_accel import (
        CMAKE_FILES,
        CMAKE_RESULTS,
        MIRROR_ENV,
        SNAPPY,
        SNAPPY_BUILD,
        SNAPPY_RESULTS,
        Box,
        _without_build_tools,
        _write,
    )

    plan = accel.plan_accel("s390x", s390x_build, "llvm")
    assert isinstance(plan, Accel) and plan.native_tools, plan
    assert set(plan.build_tools) == {"cmake", "make", "ninja"}
    assert plan.env["LOCPATH"] == f"{llvm_root.PREFIX}/usr/lib/locale:/usr/lib/locale"
    mirror = Path(os.environ.get(MIRROR_ENV, "/nonexistent"))
    sources = {n: mirror / h for n, h in (("snappy.tar.gz", SNAPPY), ("xz.tar.xz", XZ))}
    (tmp_path / "in").mkdir()
    for name, src in sources.items():
        if src.is_file():
            shutil.copy(src, tmp_path / "in" / name)
    steps = [(CMAKE_FILES, "cmake -S /cm -B /cm/b && cmake --build /cm/b", CMAKE_RESULTS),
             (UNICODE_FILES, "true", UNICODE_RESULTS)]  # fmt: skip
    if (tmp_path / "in/snappy.tar.gz").is_file():
        steps.append(({}, SNAPPY_BUILD.replace("/sn/in/", "/in/"), SNAPPY_RESULTS))
    if (tmp_path / "in/xz.tar.xz").is_file():
        steps.append(({}, XZ_BUILD.replace("/x/in/", "/in/"), XZ_RESULTS))
    results: dict[str, list[str]] = {}
    for name, box_plan, setup, prefix in (
        ("native", plan, "true", ""),
        ("emulated", _without_build_tools(plan), *_emulated_text_tools()),
    ):
        box = Box(s390x_build, box_plan)
        try:
            engine.put_tree(box.c, tmp_path / "in", "/", "in")
            box.sh(setup)
            results[name] = []
            for files, build, check in steps:
                _write(box, files)
                took = box.timed(f"{prefix} {build}")
                results[name].append(box.sh(f"{prefix} {check}"))
                print(f"{name}: {build[:50]}... {took:.1f} s")
            kinds = box.sh(f"{prefix} file -bL $(command -v cmake make sed)")
            native_programs = [ln for ln in kinds.splitlines() if "x86-64," in ln]
            assert len(native_programs) == (3 if name == "native" else 0), kinds
        finally:
            box.close()
    for native, emulated in zip(results["native"], results["emulated"], strict=True):
        assert native == emulated
    facts = "\n".join(results["native"])
    assert "host=s390x" in facts and "try_run=0 s390x" in facts and "make_host=s390x-" in facts
    assert "one=/u/src/b.c /u/src/ä.c" in facts  # `?` matched the character ä
    assert "src/ä.c" in facts and "UP=äBç" in facts and "a b ä" in facts


def _emulated_text_tools() -> tuple[str, str]:
    """For the comparison box: a setup linking the image's own text tools into /e, and a
    command prefix putting /e first on PATH (before the unchanged wrapper directory, so
    CMake records the same compiler paths) without LOCPATH: every text tool is emulated."""
    from orchestrator.emulation.cross_root import NATIVE_TOOLS

    names = " ".join(NATIVE_TOOLS)
    setup = (
        f"mkdir /e && for n in {names}; do for d in /usr/bin /bin; do "
        'if [ -x "$d/$n" ]; then ln -s "$d/$n" "/e/$n"; break; fi; done; done'
    )
    return setup, "unset LOCPATH; export PATH=/e:$PATH;"
