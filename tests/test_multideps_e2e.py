"""The multi-dependency example end to end: five static libraries from orch's recipe
library (one in C++), fetched from a local mirror of their exact upstream tarballs, built
once for both Python versions; a warm rebuild builds no dependency."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, orch
from tests.support.run import wheel_platforms, wheel_stem

pytestmark = pytest.mark.docker

DEPS = {"bzip2", "lz4", "xz", "brotli", "snappy"}


@pytest.fixture(scope="session")
def debian_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipes' upstream tarballs that Debian ships byte-identical (the only outside
    host besides PyPI that this machine reaches)."""
    import os

    given = os.environ.get("ORCH_TEST_LIBRARY_MIRROR")
    if given:
        return Path(given)
    mirror = tmp_path_factory.mktemp("mirror")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "mirror-from-debian.sh"), str(mirror)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return mirror


def test_multideps_cold_then_warm(
    x86_images: tuple[str, str], debian_mirror: Path, tmp_path: Path
) -> None:
    project = tmp_path / "multi-deps"
    shutil.copytree(EXAMPLES / "multi-deps", project)
    env = {"ORCH_CACHE_DIR": str(tmp_path / "cache"), "ORCH_SOURCE_MIRROR": str(debian_mirror)}
    cold = orch("build", "-f", str(project), "-o", str(tmp_path / "cold"), "--plain", env=env)
    assert cold.returncode == 0, cold.stdout + cold.stderr
    report = json.loads((tmp_path / "cold" / ".orch" / "report.json").read_text())
    assert {d["name"]: d["status"] for d in report["deps"]} == dict.fromkeys(DEPS, "built")
    assert len(report["deps"]) == len(DEPS)  # once each, shared by cp39 and cp311
    wheels = sorted(p.name for p in (tmp_path / "cold").glob("*.whl"))
    assert [wheel_stem(w) for w in wheels] == [
        "orch_example_depsdemo-1.0.0-cp311-cp311",
        "orch_example_depsdemo-1.0.0-cp39-cp39",
    ]
    assert all("manylinux_2_31_x86_64" in wheel_platforms(w) for w in wheels)
    for job in report["jobs"]:
        errors = [f for f in job["audit"]["findings"] if f["severity"] == "error"]
        assert not errors, errors  # no exported bzip2/lz4/lzma/brotli/snappy symbols
        assert job["verify"][0]["status"] == "passed"
        log = Path(job["log"]).read_text()
        assert "'snappy': 'linked'" in log and "'xz': '5.8.1'" in log  # the test command ran

    warm = orch(
        "build", "-f", str(project), "-o", str(tmp_path / "warm"), "--plain", "--recheck", env=env
    )
    assert warm.returncode == 0, warm.stderr
    warm_report = json.loads((tmp_path / "warm" / ".orch" / "report.json").read_text())
    assert {d["status"] for d in warm_report["deps"]} == {"cached"}
    cold_s = report["finished"] - report["started"]
    warm_s = warm_report["finished"] - warm_report["started"]
    print(f"multi-deps: cold {cold_s:.1f}s, warm {warm_s:.1f}s, ratio {cold_s / warm_s:.1f}x")
