"""`orch plan --deps`: the dependency DAG per group, as a tree and in --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.plan.dag import dag, render_tree
from tests.test_schedule import _dag


def test_the_tree_puts_each_dependency_under_what_needs_it(tmp_path: Path) -> None:
    _recipe, plan, _mirror = _dag(tmp_path, {"zlib": "", "png": "zlib", "ft": "png, zlib"})
    groups = dag(plan, lambda _group, name: "hit" if name == "zlib" else "miss")
    assert [(n.name, n.requires, n.depth, n.cache) for n in groups[0].nodes] == [
        ("zlib", (), 0, "hit"),
        ("png", ("zlib",), 1, "miss"),
        ("ft", ("png", "zlib"), 2, "miss"),
    ]
    tree = render_tree(groups)
    assert tree[1:] == [
        "  └─ ft  [requires png, zlib; cache miss]",
        "     ├─ png  [requires zlib; cache miss]",
        "     │  └─ zlib  [no requirements; cache hit]",
        "     └─ zlib  [no requirements; cache hit]",
    ]
    assert tree[0].startswith(plan.jobs[0].group)


def test_plan_json_carries_the_dag(tmp_path: Path) -> None:
    _dag(tmp_path, {"zlib": "", "png": "zlib"})
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "plan",
            "-f",
            str(tmp_path / "project" / "orch.yaml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["dependency_requires"] == {"zlib": [], "png": ["zlib"]}
    (group,) = data["dependency_dag"]
    assert [(d["name"], d["requires"], d["cache"]) for d in group["dependencies"]] == [
        ("zlib", [], None),
        ("png", ["zlib"], None),
    ]
    assert group["jobs"] == ["cp39-manylinux_2_31_x86_64"]
