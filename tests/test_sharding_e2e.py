"""Sharding for CI: `orch matrix` cuts the plan into shards, each shard is built on its own
(as a CI runner would) and `orch report` merges them: the same wheels and one report as an
unsharded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import orch

pytestmark = pytest.mark.docker


def test_shards_merge_to_the_unsharded_result(
    x86_images: tuple[str, str], project_copy: Path, tmp_path: Path
) -> None:
    from orchestrator.images.local import ensure_local_image

    ensure_local_image("i686", "runtime")
    ensure_local_image("i686", "build")
    recipe = project_copy / "orch.yaml"
    recipe.write_text(recipe.read_text().replace("archs: [x86_64]", "archs: [x86_64, i686]"))

    matrix = orch("matrix", "-f", str(recipe), "--max-shards", "4")
    assert matrix.returncode == 0, matrix.stderr
    include = json.loads(matrix.stdout)["include"]
    assert [e["shard"] for e in include] == ["1/2", "2/2"]  # two image/arch groups

    whole = tmp_path / "whole"
    assert orch("build", "-f", str(recipe), "-o", str(whole), "--plain").returncode == 0
    shard_dirs = []
    for entry in include:
        out = tmp_path / f"shard{entry['shard'].replace('/', 'of')}"
        proc = orch(
            "build", "-f", str(recipe), "-o", str(out), "--plain", "--shard", entry["shard"]
        )
        assert proc.returncode == 0, proc.stderr
        assert {p.name.split("-")[2] for p in out.glob("*.whl")} == {"cp39", "cp311"}
        shard_dirs.append(out)

    merged_json = tmp_path / "merged.json"
    html = tmp_path / "report.html"
    junit = tmp_path / "junit.xml"
    proc = orch(
        "report",
        *map(str, shard_dirs),
        "--merge-out",
        str(merged_json),
        "--html",
        str(html),
        "--junit",
        str(junit),
    )
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(merged_json.read_text())
    unsharded = json.loads((whole / ".orch" / "report.json").read_text())

    def wheels(report: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
        return {(j["id"], j["wheel"]["filename"]) for j in report["jobs"]}

    assert wheels(merged) == wheels(unsharded)
    assert len(merged["jobs"]) == 4 and {j["status"] for j in merged["jobs"]} == {"ok"}
    sharded_files = sorted(p.name for d in shard_dirs for p in d.glob("*.whl"))
    assert sharded_files == sorted(p.name for p in whole.glob("*.whl"))
    assert "cp311-manylinux_2_31_i686" in html.read_text()
