"""Clean-container verification and the audit inside `orch build`, on the real engine:
the runtime image has no compiler; an image that cannot run a wheel is a configuration
error; wheels that export std:: symbols are refused and kept out of the wheelhouse."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, orch

pytestmark = pytest.mark.docker


def report_of(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / ".orch" / "report.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture()
def visibility(tmp_path: Path) -> Path:
    dest = tmp_path / "visibility"
    shutil.copytree(
        EXAMPLES / "visibility", dest, ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    return dest


def test_runtime_image_is_clean(x86_images: tuple[str, str]) -> None:
    _build, runtime = x86_images
    probe = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            runtime,
            "sh",
            "-c",
            "command -v gcc cc g++ || true; ls /opt/orch 2>/dev/null || true; ls /opt/python",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["cp311-cp311", "cp39-cp39"]  # interpreters only


def test_hidden_visibility_passes_audit(
    x86_images: tuple[str, str], visibility: Path, tmp_path: Path
) -> None:
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(visibility), "-o", str(out), "--plain")
    assert proc.returncode == 0, proc.stderr
    job = report_of(out)["jobs"][0]
    assert not [f for f in job["audit"]["findings"] if f["severity"] == "error"]
    assert job["verify"][0]["status"] == "passed"
    assert len(list(out.glob("*.whl"))) == 1


def test_default_visibility_is_refused(
    x86_images: tuple[str, str], visibility: Path, tmp_path: Path
) -> None:
    recipe = visibility / "orch.yaml"
    recipe.write_text(recipe.read_text().replace("VISIBILITY: hidden", "VISIBILITY: default"))
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(visibility), "-o", str(out), "--plain")
    assert proc.returncode == 1
    assert not list(out.glob("*.whl")), "a refused wheel reached the wheelhouse"
    job = report_of(out)["jobs"][0]
    assert job["status"] == "failed" and job["failed_stage"] == "audit"
    assert "exported-std" in job["error"]
    std = [
        f
        for f in job["audit"]["findings"]
        if f["check"] == "exported-std" and f["severity"] == "error"
    ]
    assert std and any("once" in item for item in std[0]["items"])  # the symbols are named
    # --keep-failed keeps it aside, still not in the wheelhouse
    proc = orch("build", "-f", str(visibility), "-o", str(out), "--plain", "--keep-failed")
    assert proc.returncode == 1
    assert not list(out.glob("*.whl"))
    assert len(list((out / ".orch" / "failed").glob("*.whl"))) == 1


def test_recipe_downgrade_lets_a_check_pass(
    x86_images: tuple[str, str], visibility: Path, tmp_path: Path
) -> None:
    recipe = visibility / "orch.yaml"
    recipe.write_text(
        recipe.read_text().replace("VISIBILITY: hidden", "VISIBILITY: default")
        + "audit:\n  downgrade:\n    - {check: exported-std, severity: warning, reason: demo of a known export}\n"
    )
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(visibility), "-o", str(out), "--plain", "--no-verify")
    assert proc.returncode == 0, proc.stderr
    job = report_of(out)["jobs"][0]
    std = [f for f in job["audit"]["findings"] if f["check"] == "exported-std"]
    assert std[0]["severity"] == "warning" and "demo of a known export" in std[0]["message"]


def test_incompatible_verify_image_is_a_config_error(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    from orchestrator.images.local import ensure_local_image

    i686_runtime = ensure_local_image("i686", "runtime").ref
    recipe = project_copy / "orch.yaml"
    recipe.write_text(
        recipe.read_text()
        .replace('python: ["3.9", "3.11"]', 'python: ["3.9"]')
        .replace("test:\n", f'test:\n  verify-images: ["{i686_runtime}"]\n')
    )
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain")
    assert proc.returncode == 1
    job = report_of(out)["jobs"][0]
    assert "configuration error" in job["error"] and "the wheel is x86_64" in job["error"]
    by_image = {v["image"]: v for v in job["verify"]}
    assert by_image[i686_runtime]["status"] == "incompatible"
    assert not list(out.glob("*.whl"))


def test_coexist_both_orders(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    recipe = project_copy / "orch.yaml"
    recipe.write_text(
        recipe.read_text()
        .replace('python: ["3.9", "3.11"]', 'python: ["3.11"]')
        .replace("test:\n", 'test:\n  coexist: ["markupsafe"]\n')
    )
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain")
    assert proc.returncode == 0, proc.stderr
    log = Path(report_of(out)["jobs"][0]["log"]).read_text()
    assert "import bzdemo; import markupsafe" in log and "import markupsafe; import bzdemo" in log


def test_an_import_the_test_command_does_still_fails_the_job(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    """The import check left to a test command that starts with the same imports: a module
    that does not import fails the job at verify and lands nothing."""
    recipe = project_copy / "orch.yaml"
    text = recipe.read_text().replace('python: ["3.9", "3.11"]', 'python: ["3.11"]')
    text = text.split("test:\n", 1)[0] + (
        "test:\n  imports: [bzdemo_missing]\n  stock-images: false\n"
        '  command: python -c "import bzdemo_missing; print(1)"\n'
    )
    recipe.write_text(text)
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain")
    assert proc.returncode != 0
    [job] = report_of(out)["jobs"]
    assert job["status"] == "failed" and job["failed_stage"] == "verify", job
    log = Path(job["log"]).read_text()
    assert "import check: the test command's first statements import bzdemo_missing" in log
    assert "No module named 'bzdemo_missing'" in log
    assert not list(out.glob("*.whl"))
