"""CI runners per architecture: `orch matrix` gives every shard a `runs-on`, shards never mix
runners, `orch build --shard` cuts the plan the same way, and the host architecture decides
what is emulated (an aarch64 host emulates x86_64, not aarch64)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.plan.github import github_matrix
from orchestrator.plan.jobs import make_plan
from orchestrator.plan.runners import Runners, parse_runners
from orchestrator.recipe import load_recipe
from tests.support.run import orch
from tests.test_reports import matrix_plan

RECIPE = """\
schema: 1
name: runners-demo
project: .
python: ["3.9", "3.11"]
platforms: [manylinux_2_31, manylinux_2_36]  # bullseye serves no ppc64le/s390x
archs: [x86_64, i686, aarch64, armv7l, ppc64le, s390x]
"""


@pytest.fixture()
def recipe_file(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\nversion = "1"\n')
    path = tmp_path / "orch.yaml"
    path.write_text(RECIPE)
    return path


def test_every_shard_has_the_default_runner_of_its_architectures() -> None:
    include = github_matrix(matrix_plan(), 8)["include"]
    assert include, "no shards"
    for entry in include:
        expected = {"x86_64": "ubuntu-latest", "aarch64": "ubuntu-24.04-arm"}
        assert {expected[a] for a in entry["archs"].split()} == {entry["runs-on"]}, entry
        # on its own runner aarch64 is native: nothing in these shards is emulated
        assert entry["emulated"] is False, entry


def test_shards_never_mix_runners_even_with_one_shard_asked() -> None:
    include = github_matrix(matrix_plan(), 1)["include"]
    assert sorted(e["runs-on"] for e in include) == ["ubuntu-24.04-arm", "ubuntu-latest"]
    jobs = [j for e in include for j in e["jobs"].split()]
    assert sorted(jobs) == sorted(j.id for j in matrix_plan().jobs)  # each job exactly once


def test_a_runner_override_moves_an_architecture_to_its_own_pool() -> None:
    runners = parse_runners(["aarch64=my-arm-pool"])
    include = github_matrix(matrix_plan(), 8, runners)["include"]
    arm = [e for e in include if "aarch64" in e["archs"]]
    assert arm and all(e["runs-on"] == "my-arm-pool" for e in arm)
    assert all(e["emulated"] is False for e in arm)  # a pool named for aarch64 runs it natively


def test_an_architecture_sent_to_an_x86_64_runner_is_emulated_there() -> None:
    runners = parse_runners(["aarch64=ubuntu-latest"])
    include = github_matrix(matrix_plan(), 8, runners)["include"]
    assert {e["runs-on"] for e in include} == {"ubuntu-latest"}
    assert any(e["emulated"] for e in include if "aarch64" in e["archs"])


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("aarch46=pool", ["'aarch46' is not a known architecture", "did you mean 'aarch64'"]),
        ("aarch64", ["expected ARCH=LABEL"]),
        ("aarch64=", ["expected ARCH=LABEL"]),
    ],
)
def test_bad_runner_overrides_are_explained(item: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_runners([item])
    for w in words:
        assert w in str(err.value)


def test_an_aarch64_host_emulates_x86_64_and_runs_arm_natively(recipe_file: Path) -> None:
    plan = make_plan(load_recipe(recipe_file), host_arch="aarch64")
    emulated = {j.arch: j.emulated for j in plan.jobs}
    assert emulated["aarch64"] is False and emulated["armv7l"] is False
    assert emulated["x86_64"] is True and emulated["i686"] is True
    on_x86 = make_plan(load_recipe(recipe_file), host_arch="x86_64")
    assert {j.arch for j in on_x86.jobs if not j.emulated} == {"x86_64", "i686"}


def test_runner_hosts_decide_emulation() -> None:
    r = Runners()
    assert not r.emulated("armv7l")  # the arm64 runner runs 32-bit arm natively
    assert r.emulated("s390x") and r.emulated("ppc64le")  # no hosted runner: QEMU on x86_64
    assert not r.emulated("i686")


def test_cli_matrix_and_build_shards_agree(recipe_file: Path) -> None:
    out = orch("matrix", "-f", str(recipe_file), "--max-shards", "3", "--runner", "s390x=z-pool")
    assert out.returncode == 0, out.stderr
    include = json.loads(out.stdout)["include"]
    assert any(e["runs-on"] == "z-pool" and e["archs"] == "s390x" for e in include), include
    for entry in include:
        plan = orch(
            "plan",
            "-f",
            str(recipe_file),
            "--json",
            "--shard",
            entry["shard"],
            "--runner",
            "s390x=z-pool",
        )
        assert plan.returncode == 0, plan.stderr
        ids = sorted(j["id"] for j in json.loads(plan.stdout)["jobs"])
        assert ids == sorted(entry["jobs"].split()), entry
