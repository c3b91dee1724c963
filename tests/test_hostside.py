"""Host-side logic that needs no engine: emulation diagnosis from binfmt entries, the
environment containers inherit, wheel tag parsing, atomic landing, the plan's shards."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from orchestrator.container import hostenv
from orchestrator.emulation import binfmt as binfmt_mod
from orchestrator.options import EnvSettings
from orchestrator.pipeline.land import extract_wheels, land
from orchestrator.pipeline.verify import top_level_modules, wheel_tags


def binfmt(tmp_path: Path, name: str, flags: str, enabled: bool = True) -> Path:
    d = tmp_path / "binfmt"
    d.mkdir(exist_ok=True)
    (d / "status").write_text("enabled\n")
    (d / name).write_text(
        f"{'enabled' if enabled else 'disabled'}\ninterpreter /usr/libexec/qemu-binfmt/x\n"
        f"flags: {flags}\noffset 0\nmagic 7f45\n"
    )
    return d


def test_native_arches_need_no_handler(tmp_path: Path) -> None:
    assert binfmt_mod.support("x86_64", tmp_path, host="x86_64").mode == "native"
    assert binfmt_mod.support("i686", tmp_path, host="x86_64").mode == "native"
    assert binfmt_mod.support("armv7l", tmp_path, host="aarch64").mode == "native"


def test_handler_with_f_flag_is_emulated(tmp_path: Path) -> None:
    d = binfmt(tmp_path, "qemu-aarch64", "PF")
    s = binfmt_mod.support("aarch64", d, host="x86_64")
    assert s.mode == "emulated" and s.flags == "PF"


def test_handler_without_f_flag_is_broken_with_fix(tmp_path: Path) -> None:
    d = binfmt(tmp_path, "qemu-ppc64le", "P")
    s = binfmt_mod.support("ppc64le", d, host="x86_64")
    assert s.mode == "broken" and "F flag" in s.detail and "setup-emulation" in s.detail


def test_missing_and_disabled_handlers(tmp_path: Path) -> None:
    d = binfmt(tmp_path, "qemu-s390x", "F", enabled=False)
    assert binfmt_mod.support("s390x", d, host="x86_64").mode == "broken"
    missing = binfmt_mod.support("aarch64", d, host="x86_64")
    assert missing.mode == "missing" and "qemu-aarch64" in missing.detail
    assert binfmt_mod.support("aarch64", tmp_path / "nope", host="x86_64").mode == "missing"


def test_host_env_passes_ca_and_proxies(tmp_path: Path) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {
        "ORCH_CA_BUNDLE": str(ca),
        "HTTPS_PROXY": "http://proxy.internal:3128",
        "PIP_INDEX_URL": "https://mirror.internal/simple",
        "PIP_EXTRA_INDEX_URL": "file:///opt/local-wheels",
    }
    env = hostenv.host_env(EnvSettings.from_environ(environ))
    assert env.ca_bundle == ca.resolve()
    assert env.mounts[0].source == str(ca.resolve()) and env.mounts[0].read_only
    assert env.env["PIP_CERT"] == env.env["SSL_CERT_FILE"] == hostenv.CONTAINER_CA_PATH
    assert env.env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert env.env["PIP_INDEX_URL"] == "https://mirror.internal/simple"
    assert "PIP_EXTRA_INDEX_URL" not in env.env  # a host path means nothing in a container
    no_ca = EnvSettings.from_environ({**environ, "ORCH_NO_HOST_CA": "1"})
    assert hostenv.host_env(no_ca).mounts == []


def test_wheel_tags() -> None:
    t = wheel_tags(Path("x-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"))
    assert t.python == "cp311" and t.arch == "aarch64" and t.min_glibc == (2, 17)
    assert wheel_tags(Path("x-1-cp39-cp39-manylinux_2_31_armv7l.whl")).arch == "armv7l"
    assert wheel_tags(Path("x-1-cp39-cp39-manylinux1_i686.whl")).min_glibc == (2, 5)
    # a pure-Python wheel is verified on the architecture of the job that built it
    pure = wheel_tags(Path("x-1-py3-none-any.whl"), "aarch64")
    assert pure.arch == "aarch64" and pure.min_glibc is None


def make_wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_top_level_modules(tmp_path: Path) -> None:
    w = make_wheel(
        tmp_path / "a-1-py3-none-any.whl",
        {
            "pkg/__init__.py": "",
            "a-1.dist-info/RECORD": "",
            "a.libs/libz-1234.so": "",
            "mod.py": "",
        },
    )
    assert top_level_modules(w) == ["mod", "pkg"]
    w2 = make_wheel(tmp_path / "b-1-py3-none-any.whl", {"b-1.dist-info/top_level.txt": "_b\nb\n"})
    assert top_level_modules(w2) == ["b"]


def test_extract_and_land_are_atomic(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            ("repaired/x-1-cp39-cp39-linux_x86_64.whl", b"wheel"),
            ("repaired/junk.txt", b"j"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    staged = extract_wheels(buf.getvalue(), tmp_path / "staging")
    assert [p.name for p in staged] == ["x-1-cp39-cp39-linux_x86_64.whl"]
    house = tmp_path / "wheelhouse"
    dest = land(staged[0], house)
    assert dest.read_bytes() == b"wheel" and not staged[0].exists()
    assert [p.name for p in house.iterdir()] == ["x-1-cp39-cp39-linux_x86_64.whl"]


def test_merge_env_combines_flags_and_paths() -> None:
    from orchestrator.pipeline.build import merge_env

    deps = {
        "CPPFLAGS": "-I/opt/orch/deps/include",
        "PKG_CONFIG_PATH": "/opt/orch/deps/lib/pkgconfig",
    }
    user = {"CPPFLAGS": "-DNDEBUG", "PKG_CONFIG_PATH": "/mine", "FOO": "1"}
    env = merge_env(deps, user)
    assert env["CPPFLAGS"] == "-I/opt/orch/deps/include -DNDEBUG"
    assert env["PKG_CONFIG_PATH"] == "/mine:/opt/orch/deps/lib/pkgconfig"
    assert env["FOO"] == "1"
