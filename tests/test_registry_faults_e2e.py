"""`orch build` with a registry cache that answers garbage: every dependency is still
built and every job succeeds; the fault is a warning in the dependency logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.badregistry import bad_registry
from tests.support.depworld import build, write_recipe
from tests.support.run import containers_with_label

pytestmark = pytest.mark.docker


def test_a_garbage_registry_is_only_a_warning(
    x86_images: tuple[str, str], world, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    recipe = write_recipe(tmp_path, base, tarballs, python='["3.9"]')
    with bad_registry("html") as reg:
        monkeypatch.setenv("ORCH_CACHE_REGISTRY", f"http://ci:hunter2@{reg.url}")
        run = build(recipe, tmp_path / "wh", "--no-verify", "--no-audit")
        asked = len(reg.seen)
    assert run.returncode == 0, run.stdout + run.stderr
    assert asked > 0
    report = json.loads((tmp_path / "wh" / ".orch" / "report.json").read_text())
    assert {d["status"] for d in report["deps"]} == {"built"}
    assert [j["status"] for j in report["jobs"]] == ["ok"]
    for dep in report["deps"]:
        log = Path(dep["log"]).read_text()
        assert "as a miss" in log and "could not push" in log
        assert "hunter2" not in log
    assert "hunter2" not in run.stdout + run.stderr
    assert containers_with_label(f"io.orch.run={report['run_id']}") == []
