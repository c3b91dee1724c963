"""A warm run needs no network: hello-bz2 built once online (filling the wheel cache),
then again with the job and verify containers cut off (`--offline`, network mode none):
every wheel builds, verifies and lands from the cache. On an empty cache, --offline fails
with a clear cause and lands nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import containers_with_label, orch

pytestmark = pytest.mark.docker

# Only the loopback interface exists in a container with network mode none.
NO_NETWORK = (
    'test "$(ls /sys/class/net)" = lo || { echo "network present: $(ls /sys/class/net)"; exit 1; }'
)


def _report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / ".orch" / "report.json").read_text())
    return data


def _recipe_with_test_requirement(project: Path, *, check_offline: bool) -> None:
    """A runtime test requirement (so verification installs from the cache too), and,
    offline, a check in the build and in the test that the network is really gone."""
    recipe = project / "orch.yaml"
    original = recipe.with_suffix(".orig")
    if not original.exists():
        original.write_text(recipe.read_text())
    text = original.read_text().replace("test:\n", "test:\n  requires: [packaging]\n", 1)
    if check_offline:
        text = text.replace(
            'command: >-\n    python -c "', f'command: >-\n    {NO_NETWORK} && python -c "', 1
        )
        text += f"before-build: [{json.dumps(NO_NETWORK)}]\n"
    recipe.write_text(text)


def test_warm_run_builds_verifies_and_lands_with_no_network(
    x86_images: tuple[str, str], project_copy: Path, cache_dir: Path, tmp_path: Path
) -> None:
    _recipe_with_test_requirement(project_copy, check_offline=False)
    empty = tmp_path / "empty"
    proc = orch("build", "-f", str(project_copy), "-o", str(empty), "--plain", "--offline")
    assert proc.returncode != 0
    jobs = _report(empty)["jobs"]
    assert {j["status"] for j in jobs} == {"failed"}
    assert all("run once with the network" in (j["cause"] or j["error"]) for j in jobs)
    assert not list(empty.glob("*.whl"))
    assert not list((cache_dir / "wheels").glob("*/sets/*.json"))  # nothing half-recorded

    cold = tmp_path / "cold"
    proc = orch("build", "-f", str(project_copy), "-o", str(cold), "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for job in _report(cold)["jobs"]:
        # filled ahead while the dependencies built (pipeline/prefill.py), unless the job
        # took the set's lock first (the dependencies cached by the offline run above)
        ahead = cold / ".orch" / "logs" / f"{job['id']}-prefill.log"
        prefilled = ahead.is_file() and "(prefill): miss" in ahead.read_text()
        assert job["wheel_cache"] == {"build": "hit" if prefilled else "miss", "verify": "miss"}
    assert list((cache_dir / "wheels").glob("*-x86_64/setuptools-*.whl"))
    assert list((cache_dir / "wheels").glob("*-x86_64/packaging-*.whl"))

    _recipe_with_test_requirement(project_copy, check_offline=True)
    warm = tmp_path / "warm"
    proc = orch(
        "build", "-f", str(project_copy), "-o", str(warm), "--plain", "--offline", "--recheck"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = _report(warm)
    assert sorted(p.name for p in warm.glob("*.whl")) == sorted(p.name for p in cold.glob("*.whl"))
    for job in report["jobs"]:
        assert job["status"] == "ok"
        assert job["wheel_cache"] == {"build": "hit", "verify": "hit"}
        # the runtime image, and a stock image too where one is present (stock-images: auto)
        statuses = [v["status"] for v in job["verify"]]
        assert statuses and set(statuses) == {"passed"}, job["verify"]
        log = Path(job["log"]).read_text()
        # the no-network checks ran in the build and in verification, and passed (status ok)
        assert log.count("ls /sys/class/net") >= 2 and "libbz2 1.0" in log
        # a restored environment: the backend's hook called directly, no `build` in front
        assert "hook called directly" in log and "fill_build_requirements.py build" not in log
        assert "[wheels] build requirements: hit" in log and "installer uv" in log
    # uv's answers about each verification image's interpreter, kept for the next runs
    assert list((cache_dir / "wheels").glob("*-x86_64/uv-interpreters.tar"))
    assert not containers_with_label(f"io.orch.run={report['run_id']}")
