"""Opt-in (ORCH_TEST_NATIVE_UV=1, x86_64 hosts; a few minutes of aarch64 builds): an
emulated aarch64 job's warm run installs its build environment and its verification
with the native x86_64 uv, with no network, and lands the same wheels; its C compile is
a compile-cache hit."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.emulation.ccache_kit import ensure_kit
from tests.conftest import EXAMPLES, orch

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("ORCH_TEST_NATIVE_UV") != "1" or platform.machine() != "x86_64",
        reason="set ORCH_TEST_NATIVE_UV=1 (x86_64 hosts): aarch64 builds under QEMU",
    ),
]


def _build(project: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    proc = orch("build", "-f", str(project / "orch.yaml"), "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs: list[dict[str, Any]] = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["ok"]
    return jobs


def test_warm_aarch64_installs_with_the_native_uv_offline(cache_dir: Path, tmp_path: Path) -> None:
    ensure_kit()  # a toolchain, like the cross roots (in the shared ORCH_CROSS_DIR)
    project = tmp_path / "hello-bz2"
    shutil.copytree(EXAMPLES / "hello-bz2", project)
    recipe = (project / "orch.yaml").read_text()
    recipe = recipe.replace('python: ["3.9", "3.11"]', 'python: ["3.9"]')
    recipe = recipe.replace("archs: [x86_64]", "archs: [aarch64]")
    recipe = recipe.replace("test:\n", "test:\n  requires: [packaging]\n  stock-images: false\n")
    (project / "orch.yaml").write_text(recipe)

    [cold_job] = _build(project, tmp_path / "cold")
    cold_log = Path(cold_job["log"]).read_text()  # cp39 has no tomllib: pip's fill, logged
    assert "this Python cannot read a pylock.toml (no tomllib): pip resolves" in cold_log
    [job] = _build(project, tmp_path / "warm", "--offline", "--recheck")
    assert job["wheel_cache"] == {"build": "hit", "verify": "hit"}
    assert job["compile_cache"]["hits"] == 1 and job["compile_cache"]["misses"] == 0
    log = Path(job["log"]).read_text()
    assert "installer uv (/orch/native/uv-" in log  # the build environment
    verify = log.split("] verify\n", 1)[1]  # the stage's "==> [ 3.6s] verify" line on
    assert "/orch/native/uv-0" in verify and "uv pip install" in verify
    assert "hook called directly" in log  # the restored environment's build
    assert list((cache_dir / "native").glob("uv-*/uv"))
    cold = sorted(p.name for p in (tmp_path / "cold").glob("*.whl"))
    assert cold == sorted(p.name for p in (tmp_path / "warm").glob("*.whl")) != []
