"""The glibc pin of images whose glibc is newer than their policy (deps/glibcpin.py): the
forky family (glibc 2.43, manylinux_2_39) binds functions such as x86_64's
`sqrtf@@GLIBC_2.43` to their version within the policy, so Pillow's wheels (lcms2 calls
sqrtf) can be repaired; functions whose newer version changed (C23's fromfp, termios'
cf*speed) are never pinned. The engine part runs the header script in the forky image
(opt-in with the forky tests: ORCH_TEST_PYTHONS=1)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.deps import glibcpin
from orchestrator.deps.buildsys import build_script
from orchestrator.deps.stage import DepGroup
from orchestrator.images.local import ensure_local_image
from orchestrator.recipe.load import load_dependency_file
from orchestrator.recipe.model import DependencySpec
from tests.conftest import ROOT


def test_only_an_image_newer_than_its_policy_is_pinned() -> None:
    assert glibcpin.ceiling("manylinux_2_39", "local") == "2.39"  # forky: glibc 2.43
    assert glibcpin.ceiling("manylinux_2_31", "local") == ""  # bullseye: its own glibc
    assert glibcpin.ceiling("manylinux_2_36", "local") == ""
    assert glibcpin.ceiling("manylinux_2_39", "explicit") == ""  # not an image orch knows
    assert glibcpin.ceiling("manylinux_2_28", "pypa") == ""


def test_the_script_pins_only_functions_that_stayed_the_same() -> None:
    script = glibcpin.script("2.39")
    assert "sqrtf" in script and "readelf --dyn-syms" in script
    for changed in ("fromfp", "ufromfp", "cfgetispeed", "cfsetspeed"):
        assert f"|{changed}|" not in script and f"({changed}|" not in script
    assert "#ifndef __ASSEMBLER__" in script  # .S files get the -include too


def _libffi() -> DependencySpec:
    return load_dependency_file(ROOT / "recipes" / "libffi.yaml")


def test_a_pinned_group_builds_with_the_header_and_has_its_own_keys() -> None:
    dep = _libffi()
    plain = build_script(dep, src_dir="/s", build_dir="/b", prefix="/p", jobs=1)
    pinned = build_script(
        dep, src_dir="/s", build_dir="/b", prefix="/p", jobs=1, extra_cflags=glibcpin.FLAG
    )
    assert glibcpin.FLAG not in plain
    assert f"export CFLAGS='-O2 -fPIC -fvisibility=hidden {glibcpin.FLAG}'" in pinned
    assert f"-fvisibility-inlines-hidden {glibcpin.FLAG}'" in pinned  # CXXFLAGS too
    group = DepGroup("g", "img", "sha256:1", "x86_64")
    assert group.toolchain == "sha256:1"  # every other family's keys are unchanged
    pinned_id = DepGroup("g", "img", "sha256:1", "x86_64", glibc_ceiling="2.39").toolchain
    assert pinned_id.startswith("sha256:1+glibc<=2.39:")  # and the pin script's digest


def test_the_pin_survives_a_recipes_own_cflags_and_its_script_is_in_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libwebp and openjpeg set CFLAGS in build.env: the pin is added after them; a
    changed list of pinned functions gives the pinned groups new keys."""
    dep = load_dependency_file(ROOT / "recipes" / "libwebp.yaml")
    assert "CFLAGS" in dict(dep.env)
    script = build_script(
        dep, src_dir="/s", build_dir="/b", prefix="/p", jobs=1, extra_cflags=glibcpin.FLAG
    )
    own = script.index("# The recipe's own environment (build.env).")
    assert f"export CFLAGS=\"${{CFLAGS}} \"'{glibcpin.FLAG}'" in script[own:]
    before = DepGroup("g", "img", "sha256:1", "x86_64", glibc_ceiling="2.39").toolchain
    monkeypatch.setattr(glibcpin, "SAME_FUNCTION", (*glibcpin.SAME_FUNCTION, "cbrtf"))
    assert DepGroup("g", "img", "sha256:1", "x86_64", glibc_ceiling="2.39").toolchain != before


@pytest.mark.docker
@pytest.mark.skipif(
    os.environ.get("ORCH_TEST_PYTHONS") != "1",
    reason="set ORCH_TEST_PYTHONS=1 (builds the forky images)",
)
def test_the_header_binds_sqrtf_to_its_old_version_in_the_forky_image(tmp_path: Path) -> None:
    image = ensure_local_image("x86_64", "build", suite="forky", pythons=("3.14",)).ref
    (tmp_path / "pin.sh").write_text(glibcpin.script("2.39"))
    (tmp_path / "a.c").write_text("#include <math.h>\nfloat f(float x) { return sqrtf(x); }\n")
    (tmp_path / "s.S").write_text("\t.text\n\t.globl g\ng:\tret\n")
    compile_both = (
        "mkdir -p /orch && bash /w/pin.sh && cd /tmp && "
        "for flag in '' '-include /orch/glibc-pin.h'; do "
        "gcc -O2 -fPIC $flag -shared -o a.so /w/a.c -lm && "
        "readelf --dyn-syms -W a.so | grep -o 'sqrtf@[A-Z_0-9.]*'; done && "
        "gcc -include /orch/glibc-pin.h -c /w/s.S -o s.o && echo assembled"
    )
    proc = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{tmp_path}:/w:ro", image, "bash", "-c", compile_both],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "sqrtf@GLIBC_2.43" in lines  # without the pin: the policy cannot have it
    assert "sqrtf@GLIBC_2.2.5" in lines  # with it: what an old glibc links
    assert lines[-1] == "assembled"
    assert any(ln.startswith("glibc pin: 20 function(s)") for ln in lines), lines
