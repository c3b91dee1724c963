"""orch build end to end on the real engine with the local manylinux_2_31 image: wheels
built in fresh containers, repaired by auditwheel, verified in the runtime image, landed
atomically; failures contained to their job; nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import containers_with_label, orch
from tests.support.run import start_orch

pytestmark = pytest.mark.docker


def wheels(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("*.whl"))


def test_example_builds_repairs_verifies(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "wheelhouse"
    proc = orch("build", "-f", str(project_copy), "-o", str(out), "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = wheels(out)
    assert names == [
        # every tag auditwheel proves (libbz2 and the module need nothing newer than 2.5)
        "orch_example_bzdemo-1.0.0-cp311-cp311-manylinux1_x86_64.manylinux_2_31_x86_64.manylinux_2_5_x86_64.whl",
        "orch_example_bzdemo-1.0.0-cp39-cp39-manylinux1_x86_64.manylinux_2_31_x86_64.manylinux_2_5_x86_64.whl",
    ]
    for name in names:
        with zipfile.ZipFile(out / name) as zf:
            grafted = [n for n in zf.namelist() if n.startswith("orch_example_bzdemo.libs/libbz2-")]
            assert grafted, f"auditwheel did not graft libbz2 into {name}"
    report = json.loads((out / ".orch" / "report.json").read_text())
    assert {j["status"] for j in report["jobs"]} == {"ok"}
    for job in report["jobs"]:
        assert job["verify"] and job["verify"][0]["status"] == "passed"
        assert "-runtime:" in job["verify"][0]["image"]
        assert job["wheel"]["sha256"] and job["wheel"]["size"] > 0
        assert Path(job["log"]).is_file()
        assert {"build", "repair", "verify"} <= set(job["stages"])
    # the test command ran in the clean container, with the grafted library
    log = Path(report["jobs"][0]["log"]).read_text()
    assert "libbz2 1.0" in log
    assert not containers_with_label(f"io.orch.run={report['run_id']}")


def test_killed_container_fails_only_its_job(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    # cp39's before-build waits, so we can kill its container mid-build.
    recipe = project_copy / "orch.yaml"
    recipe.write_text(
        recipe.read_text()
        + "before-build: [\"if python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))'; then sleep 60; fi\"]\n"
    )
    out = tmp_path / "wheelhouse"
    proc = start_orch("build", "-f", str(recipe), "-o", str(out), "--plain", "--no-verify")
    mine = f"io.orch.pid={proc.pid}"  # this run's containers, not a concurrent run's
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        ids = containers_with_label("io.orch.job=cp39-manylinux_2_31_x86_64", mine)
        if ids:
            ps = subprocess.run(["docker", "top", ids[0]], capture_output=True, text=True)
            if "sleep 60" in ps.stdout:
                victim = ids[0]
        time.sleep(0.5)
    assert victim, "the cp39 job never reached its before-build sleep"
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 1, output
    assert wheels(out) == [
        "orch_example_bzdemo-1.0.0-cp311-cp311-manylinux1_x86_64.manylinux_2_31_x86_64.manylinux_2_5_x86_64.whl"
    ]
    report = json.loads((out / ".orch" / "report.json").read_text())
    by_id = {j["id"]: j for j in report["jobs"]}
    assert by_id["cp39-manylinux_2_31_x86_64"]["status"] == "failed"
    assert by_id["cp39-manylinux_2_31_x86_64"]["failed_stage"] == "before-build"
    assert by_id["cp311-manylinux_2_31_x86_64"]["status"] == "ok"
    assert "sleep 60" in "\n".join(by_id["cp39-manylinux_2_31_x86_64"]["log_tail"])
    assert "cp39-manylinux_2_31_x86_64 failed in before-build" in output  # tail shown
    assert not list((out / ".orch").glob("staging/*/*")), "staging left behind"
    assert not containers_with_label("io.orch.job=cp39-manylinux_2_31_x86_64", mine)
    assert not containers_with_label("io.orch.job=cp311-manylinux_2_31_x86_64", mine)


def test_ctrl_c_leaves_no_container_and_no_wheel(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    recipe = project_copy / "orch.yaml"
    recipe.write_text(recipe.read_text() + 'before-build: ["sleep 60"]\n')
    out = tmp_path / "wheelhouse"
    proc = start_orch("build", "-f", str(recipe), "-o", str(out), "--plain")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        ids = containers_with_label("io.orch.job=cp311-manylinux_2_31_x86_64")
        if (
            ids
            and "sleep 60"
            in subprocess.run(["docker", "top", ids[0]], capture_output=True, text=True).stdout
        ):
            break
        time.sleep(0.5)
    else:
        pytest.fail("build never reached before-build")
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert wheels(out) == []
    assert not containers_with_label("io.orch.job=cp311-manylinux_2_31_x86_64")
    assert not containers_with_label("io.orch.job=cp39-manylinux_2_31_x86_64")


def test_broken_recipe_starts_no_container(docker_engine: None, tmp_path: Path) -> None:
    before = set(containers_with_label("io.orch.managed=1"))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "setup.py").write_text("")
    bad = tmp_path / "orch.yaml"
    for text in (
        "schema: 1\nproject: p\npython: ['3.9'\n",  # syntax
        "schema: 1\nproject: p\nplatfroms: [manylinux_2_31]\n",  # unknown key
        "schema: 1\nproject: p\nplatforms: [manylinux1]\narchs: [s390x]\n",  # impossible pair
        "schema: 1\nproject: missing-dir\n",  # missing source
    ):
        bad.write_text(text)
        proc = orch("build", "-f", str(bad), "-o", str(tmp_path / "wh"))
        assert proc.returncode == 2, proc.stderr
        assert str(bad) in proc.stderr
        assert not (tmp_path / "wh").exists()
    assert set(containers_with_label("io.orch.managed=1")) == before


def test_keep_container_then_clean(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    recipe = project_copy / "orch.yaml"
    recipe.write_text(recipe.read_text() + 'before-build: ["echo deliberate failure; exit 3"]\n')
    proc = orch(
        "build",
        "-f",
        str(recipe),
        "-o",
        str(tmp_path / "wh"),
        "--only",
        "cp39-*",
        "--keep-container",
        "--plain",
    )
    assert proc.returncode == 1
    assert "docker exec -it" in proc.stderr
    kept = containers_with_label("io.orch.job=cp39-manylinux_2_31_x86_64")
    assert len(kept) == 1
    clean = orch("clean")
    assert clean.returncode == 0
    assert not containers_with_label("io.orch.job=cp39-manylinux_2_31_x86_64")


def test_pypa_image_unavailable_is_clear(
    docker_engine: None, project_copy: Path, tmp_path: Path
) -> None:
    recipe = project_copy / "orch.yaml"
    text = recipe.read_text().replace("platforms: [manylinux_2_31]", "platforms: [manylinux2014]")
    recipe.write_text(text.replace('python: ["3.9", "3.11"]', 'python: ["3.9"]'))
    env = {k: v for k, v in os.environ.items() if k != "ORCH_IMAGE_MIRROR"}
    proc = orch("build", "-f", str(recipe), "-o", str(tmp_path / "wh"), "--plain", env=env)
    assert proc.returncode == 3, proc.stderr
    assert "quay.io/pypa/manylinux2014_x86_64" in proc.stderr
    assert "cannot be pulled" in proc.stderr and "build-local" in proc.stderr
    assert not list((tmp_path / "wh").glob("*.whl"))
