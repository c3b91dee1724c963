"""Emulated CPython compiles byte-compile on the host's interpreter of the same source:
native-pyc.sh (make's PYTHON_FOR_BUILD there) sends compileall to it and everything else
to the interpreter just built, as configure's own './python -E' would; and only emulated
interpreters' keys depend on it, so native interpreters keep their cached tarballs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator import archs
from orchestrator.images import definition

SCRIPT = definition.definition_dir() / definition.SCRIPTS_SUBDIR / definition.NATIVE_PYC_SCRIPT


def _fake(path: Path, name: str) -> None:
    probe = '[ "$*" = "-c pass" ] && exit 0\n'  # the start-up check
    path.write_text(f'#!/bin/sh\n{probe}echo "{name} PIP_NO_COMPILE=${{PIP_NO_COMPILE:-}} $*"\n')
    path.chmod(0o755)


def _run(tmp_path: Path, *args: str) -> list[str]:
    _fake(tmp_path / "python", "target")
    _fake(tmp_path / "native", "native")
    site = tmp_path / "prefix" / "lib" / "python3.13" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ORCH_NATIVE_PYTHON": str(tmp_path / "native"),
        "ORCH_PREFIX": str(tmp_path / "prefix"),
        "TAG": "cp313-cp313",
    }
    out = subprocess.run(
        ["sh", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_compileall_runs_natively(tmp_path: Path) -> None:
    lines = _run(tmp_path, "-Wi", "/opt/python/x/lib/python3.13/compileall.py", "-o", "0", "d")
    assert lines == ["native PIP_NO_COMPILE= -Wi /opt/python/x/lib/python3.13/compileall.py -o 0 d"]


def test_everything_else_runs_on_the_built_interpreter(tmp_path: Path) -> None:
    lines = _run(tmp_path, "-S", "-m", "sysconfig", "--generate-posix-vars")
    assert lines == ["target PIP_NO_COMPILE= -E -S -m sysconfig --generate-posix-vars"]


def test_ensurepip_installs_without_compiling_then_compiles_natively(tmp_path: Path) -> None:
    lines = _run(tmp_path, "-m", "ensurepip", "--root=/")
    site = tmp_path / "prefix" / "lib" / "python3.13" / "site-packages"
    assert lines == [
        "target PIP_NO_COMPILE=1 -E -m ensurepip --root=/",
        f"native PIP_NO_COMPILE= -E -m compileall -q -f -x badsyntax {site}",
    ]


def test_only_emulated_interpreter_keys_depend_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defn = definition.load_suite("bullseye")
    source = defn.source_pythons["cp313-cp313"]
    copy = tmp_path / "local"
    shutil.copytree(definition.definition_dir(), copy)
    monkeypatch.setattr(definition, "definition_dir", lambda: copy)
    script = copy / definition.SCRIPTS_SUBDIR / definition.NATIVE_PYC_SCRIPT
    builders = {a: definition.plan_builder(defn, archs.get(a)) for a in ("x86_64", "aarch64")}
    before = {a: definition.plan_interpreter(source, b).spec_digest for a, b in builders.items()}
    script.write_text(script.read_text() + "\n# changed\n")
    after = {a: definition.plan_interpreter(source, b).spec_digest for a, b in builders.items()}
    assert before["x86_64"] == after["x86_64"]  # native: its cached tarball stays valid
    assert before["aarch64"] != after["aarch64"]


def test_a_native_interpreter_that_cannot_start_falls_back_to_emulation(tmp_path: Path) -> None:
    _run(tmp_path)  # writes the fakes
    (tmp_path / "native").write_text("#!/bin/sh\nexit 127\n")
    env = {**os.environ, "ORCH_NATIVE_PYTHON": str(tmp_path / "native"), "TAG": "cp313-cp313"}
    out = subprocess.run(
        ["sh", str(SCRIPT), "-Wi", "/x/compileall.py", "d"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["target PIP_NO_COMPILE= -E -Wi /x/compileall.py d"]
    assert "byte-compiling emulated" in out.stderr


def test_the_script_is_executable() -> None:
    # make runs PYTHON_FOR_BUILD as a command: without the bit, `Permission denied`
    # after the whole make (seen once, 24 minutes into an aarch64 compile).
    assert os.access(SCRIPT, os.X_OK)
