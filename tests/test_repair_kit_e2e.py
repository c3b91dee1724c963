"""The native auditwheel kit on the real engine: in one emulated aarch64 container of the
local build image, the image's own (emulated) auditwheel and the kit's x86_64 auditwheel
repair the same wheel; the two repaired wheels have the same name (tags), the same members
(the grafted libbz2 under the same hashed name) and the same bytes in every member.

The wheel is made here, not built: Debian's `_bz2` extension module of the image's
Python 3.9 (an aarch64 ELF that needs libbz2.so.1.0, which is not in the policy's
whitelist) packed as a cp39 linux_aarch64 wheel, so the test costs two repairs, not a build.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from orchestrator.emulation.repair_kit import PREFIX, ensure_kit
from orchestrator.images.local import ensure_local_image
from orchestrator.pipeline.repair import auditwheel
from tests.support.run import EXAMPLES, orch

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the kit is amd64"),
]

EXT = "/usr/lib/python3.9/lib-dynload/_bz2.cpython-39-aarch64-linux-gnu.so"
MODULE = "bz2mod/_bz2.cpython-39-aarch64-linux-gnu.so"
PLAT = "manylinux_2_31_aarch64"


def _docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"docker {shlex.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _wheel(ext: Path, dest: Path) -> Path:
    """bz2mod-1.0 for cp39 linux_aarch64: the extension module, a package, the metadata."""
    files = {
        "bz2mod/__init__.py": b"from bz2mod._bz2 import BZ2Compressor\n",
        MODULE: ext.read_bytes(),
        "bz2mod-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bz2mod\nVersion: 1.0\n",
        "bz2mod-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
        b"Root-Is-Purelib: false\nTag: cp39-cp39-linux_aarch64\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("bz2mod-1.0.dist-info/RECORD,,")
    files["bz2mod-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / "bz2mod-1.0-cp39-cp39-linux_aarch64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def _members(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()}


def test_native_repair_equals_the_emulated_one(tmp_path: Path) -> None:
    kit = ensure_kit()
    image = ensure_local_image("aarch64", "build").ref
    name = f"orch-test-repair-kit-{tmp_path.name}"
    mount = f"type=bind,source={kit.path},target={PREFIX},readonly"
    run = ["run", "-d", "--rm", "--name", name, "--platform", "linux/arm64", "--mount", mount]
    _docker(*run, image, "sleep", "600")
    try:
        _docker("cp", f"{name}:{EXT}", str(tmp_path / "ext.so"))
        wheel = _wheel(tmp_path / "ext.so", tmp_path)
        _docker("exec", name, "mkdir", "-p", "/w/in")
        _docker("cp", str(wheel), f"{name}:/w/in/{wheel.name}")
        for out, start in (("emulated", "auditwheel"), ("native", auditwheel("aarch64", kit))):
            script = f"{start} repair --plat {PLAT} -w /w/{out} /w/in/{wheel.name}"
            _docker("exec", name, "bash", "-c", script)
            _docker("cp", f"{name}:/w/{out}", str(tmp_path / out))
        # the native one really ran the kit's x86_64 interpreter (not the image's)
        probe = auditwheel("aarch64", kit).replace(
            " /opt/orch-repair/driver.py aarch64 64 auditwheel", ""
        )
        machine = _docker(
            "exec", name, "bash", "-c", f"{probe} -c 'import os; print(os.uname().machine)'"
        )
        assert machine.strip() == "x86_64"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)

    [emulated] = list((tmp_path / "emulated").glob("*.whl"))
    [native] = list((tmp_path / "native").glob("*.whl"))
    assert native.name == emulated.name
    assert PLAT in native.name.split("-")[-1]
    members = _members(native)
    grafted = [n for n in members if n.startswith("bz2mod.libs/libbz2-")]
    assert len(grafted) == 1, sorted(members)
    assert members == _members(emulated)  # names, grafted libraries, every byte


@pytest.mark.skipif(
    os.environ.get("ORCH_TEST_NATIVE_REPAIR") != "1",
    reason="set ORCH_TEST_NATIVE_REPAIR=1: two aarch64 builds under QEMU (minutes)",
)
def test_orch_build_lands_the_same_wheel_with_either_repair(
    cache_dir: Path, tmp_path: Path
) -> None:
    """Opt-in: a whole aarch64 job (hello-bz2 links libbz2 dynamically: auditwheel grafts
    it) with the emulated repair and with the kit lands the same wheel, member for member;
    the kit's run says it used the kit, the other that it did not."""
    ensure_kit()
    project = tmp_path / "hello-bz2"
    shutil.copytree(EXAMPLES / "hello-bz2", project)
    recipe = (project / "orch.yaml").read_text()
    recipe = recipe.replace('python: ["3.9", "3.11"]', 'python: ["3.9"]')
    recipe = recipe.replace("archs: [x86_64]", "archs: [aarch64]")
    (project / "orch.yaml").write_text(recipe.replace("test:\n", "test:\n  stock-images: false\n"))
    landed = {}
    for mode in ("0", "1"):
        out = tmp_path / f"out-{mode}"
        proc = orch(
            "build",
            "-f",
            str(project / "orch.yaml"),
            "-o",
            str(out),
            env={"ORCH_NATIVE_REPAIR": mode},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [job] = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
        assert job["status"] == "ok" and job["verify"][0]["status"] == "passed"
        assert ("[repair] native auditwheel" in Path(job["log"]).read_text()) == (mode == "1")
        [landed[mode]] = list(out.glob("*.whl"))
    assert landed["1"].name == landed["0"].name
    members = _members(landed["1"])
    assert any(".libs/libbz2-" in n for n in members), sorted(members)
    assert members == _members(landed["0"])
