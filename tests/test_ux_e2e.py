"""On the real engine: a job whose image is not a local one (as for pypa policies) is
verified in a fresh container of that image, with no dependency prefix and no source tree,
and a failed job carries its cause line into the report and the summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, orch

pytestmark = pytest.mark.docker

CAUSE = "error: deliberate failure after the clean-container checks"
# Runs in the verify container: no /opt/orch (the dependency prefix), no source tree or build
# output (/orch/src, /orch/dist) — only the wheel, its venv and the cached requirements;
# only then the line the report must lead with.
CHECKS = (
    "test ! -e /opt/orch && test ! -e /orch/src && test ! -e /orch/dist && test -d /orch/verify"
    f' && echo "{CAUSE}" && exit 1'
)


def test_explicit_image_verifies_in_a_fresh_container_and_reports_the_cause(
    x86_images: tuple[str, str], tmp_path: Path
) -> None:
    build_ref, _runtime = x86_images
    project = tmp_path / "visibility"
    shutil.copytree(EXAMPLES / "visibility", project, ignore=shutil.ignore_patterns("build"))
    recipe = project / "orch.yaml"
    original = '  command: python -c "import visdemo; print(visdemo.greet())"'
    text = recipe.read_text()
    assert original in text
    text = text.replace(original, f"  command: {json.dumps(CHECKS)}")
    recipe.write_text(text + f"images: {{manylinux_2_31: {json.dumps(build_ref)}}}\n")

    plan = orch("plan", "-f", str(recipe), "--json")
    assert plan.returncode == 0, plan.stderr
    (job,) = json.loads(plan.stdout)["jobs"]
    assert job["image_source"] == "explicit" and job["verify_images"] == [build_ref]

    out = tmp_path / "wh"
    done = orch("build", "-f", str(recipe), "-o", str(out), "--plain", "-j", "1")
    assert done.returncode == 1, done.stderr
    result = json.loads((out / ".orch" / "report.json").read_text())["jobs"][0]
    assert result["failed_stage"] == "verify", (result["error"], result["log_tail"])
    assert result["verify"][0]["image"] == build_ref
    assert result["cause"] == CAUSE, result
    assert CAUSE in done.stdout + done.stderr  # the summary leads with it
    assert not list(out.glob("*.whl"))
