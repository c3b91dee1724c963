"""Per-architecture engines (plan/engines.py, container/routing.py, pipeline/remote.py):
where routes come from and how bad ones are refused, and, on in-memory engines, that a
routed architecture's jobs run on its engine, with copies instead of mounts, while an
engine that cannot be reached, or goes away, fails only its jobs, with the fix.
The real second dockerd is exercised by tests/test_engines_e2e.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator import options
from orchestrator.container.hostenv import HostEnv
from orchestrator.container.types import Engine
from orchestrator.errors import ConfigError, EngineUnreachable
from orchestrator.options import BuildOptions, EnvSettings
from orchestrator.plan.engines import context_endpoint, engine_routes, with_engines
from orchestrator.plan.jobs import Plan
from tests.support.fakeengine import FakeContainer, FakeEngine, build, succeed
from tests.test_runner import engine_for, setup
from tests.test_runner import options as build_options

URL = "tcp://127.0.0.1:1"


def settings(tmp_path: Path, engines: dict[str, str], config: str | None = None) -> EnvSettings:
    path = tmp_path / "config.yaml"
    if config is not None:
        path.write_text(config)
    return EnvSettings(engines=engines, config_file=path)


def test_env_routes_win_over_the_config_file_and_empty_routes_back(tmp_path: Path) -> None:
    config = "engines:\n  aarch64: ssh://builder@arm-host\n  s390x: my-z-context\n"
    routes = engine_routes(
        settings(tmp_path, {"ORCH_ENGINE_AARCH64": URL, "ORCH_ENGINE_S390X": ""}, config)
    )
    assert {a: (r.target, r.source) for a, r in routes.items()} == {
        "aarch64": (URL, "ORCH_ENGINE_AARCH64")
    }
    only_file = engine_routes(settings(tmp_path, {}, config))
    assert only_file["s390x"].is_context and only_file["s390x"].target == "my-z-context"
    assert only_file["aarch64"].source.endswith("config.yaml: engines.aarch64")
    assert engine_routes(settings(tmp_path / "none", {})) == {}  # no file: nothing routed


def test_the_environment_is_read_into_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCH_ENGINE_I686", f" {URL} ")
    monkeypatch.setenv("ORCH_CONFIG", str(tmp_path / "c.yaml"))
    got = EnvSettings.from_environ(dict(os.environ))
    assert got.engines["ORCH_ENGINE_I686"] == URL and got.config_file == tmp_path / "c.yaml"
    monkeypatch.delenv("ORCH_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    got = options.EnvSettings.from_environ(dict(os.environ))
    assert got.config_file == tmp_path / "orch" / "config.yaml"


@pytest.mark.parametrize(
    ("engines", "config", "names"),
    [
        ({"ORCH_ENGINE_ARM64": URL}, None, ["ORCH_ENGINE_ARM64", "ORCH_ENGINE_AARCH64"]),
        ({"ORCH_ENGINE_I686": "http://host:2375"}, None, ["ORCH_ENGINE_I686", "tcp://"]),
        ({}, "engines:\n  riscv64: tcp://h:1\n", ["engines.riscv64", "aarch64"]),
        ({}, "engines:\n  ppc64le: 'not a context!'\n", ["engines.ppc64le", "docker context ls"]),
        ({}, "engines: [aarch64]\n", ["engines:", "aarch64: ssh://"]),
        ({}, "engines: {\n", ["config.yaml", "YAML"]),
    ],
)
def test_bad_routes_are_refused_naming_where_and_the_fix(
    tmp_path: Path, engines: dict[str, str], config: str | None, names: Sequence[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        engine_routes(settings(tmp_path, engines, config))
    for name in names:
        assert name in str(err.value)


def test_the_plan_names_each_jobs_engine(tmp_path: Path) -> None:
    _recipe, plan, _mirror = setup(tmp_path, ("x86_64", "i686"), python=("3.9",))
    routed = with_engines(plan, engine_routes(settings(tmp_path, {"ORCH_ENGINE_I686": URL})))
    assert {j.arch: j.engine for j in routed.jobs} == {"x86_64": "", "i686": URL}
    assert {j["arch"]: j["engine"] for j in routed.to_json()["jobs"]} == {"x86_64": "", "i686": URL}


def prepared(tmp_path: Path) -> tuple[Any, Plan, BuildOptions]:
    """An x86_64 and an i686 job; i686 routed to URL."""
    recipe, plan, mirror = setup(tmp_path, ("x86_64", "i686"), python=("3.9",))
    env = EnvSettings(
        source_mirrors=(str(mirror),), engines={"ORCH_ENGINE_I686": URL}, wheel_prefill=False
    )
    return recipe, plan, replace(build_options(tmp_path, mirror), env=env)


def _run(
    recipe: Any, plan: Plan, opts: BuildOptions, local: FakeEngine, connect: Any
) -> tuple[Any, BuildOptions, str]:
    report, out = build(recipe, plan, opts, local, require_arch=_no_i686_binfmt, connect=connect)
    return report, opts, out


def _no_i686_binfmt(arch: str) -> bool:
    return arch != "i686" or pytest.fail("binfmt asked for i686")


def test_a_routed_architecture_runs_on_its_engine_with_copies_not_mounts(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    monkeypatch.setattr("orchestrator.pipeline.run.host_env", lambda _s: HostEnv(ca, {}))
    recipe, plan, opts = prepared(tmp_path)
    local, remote = engine_for(plan), engine_for(plan)
    seen: list[str] = []

    def connect(url: str, fix: str) -> tuple[Engine, str]:
        seen.append(url)
        return remote, "x86_64"

    report, opts, _out = _run(recipe, plan, opts, local, connect)
    assert seen == [URL]
    assert {j.arch: j.status for j in report.jobs} == {"x86_64": "ok", "i686": "ok"}
    assert {c.job for c in remote.created} == {"cp39-manylinux_2_31_i686"}
    assert {c.job for c in local.created} == {"cp39-manylinux_2_31_x86_64"}
    there = remote.created[0]
    assert there.spec.mounts == () and there.spec.auto_remove  # nothing of this host mounted
    assert "/" in there.copied_in  # the CA bundle (and the tools) copied in instead
    assert local.created[0].spec.mounts and not local.created[0].spec.auto_remove
    assert len(list(opts.output_dir.glob("*i686.whl"))) == 1
    assert not remote.live and not local.live


def test_an_unreachable_engine_fails_only_its_jobs_with_the_fix(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, opts = prepared(tmp_path)
    local = engine_for(plan)

    def connect(url: str, fix: str) -> tuple[Engine, str]:
        raise EngineUnreachable(f"cannot reach the Docker engine at {url} (refused)")

    report, opts, out = _run(recipe, plan, opts, local, connect)
    by_arch = {j.arch: j for j in report.jobs}
    assert by_arch["x86_64"].status == "ok"
    assert by_arch["i686"].status == "failed" and by_arch["i686"].failed_stage == "start"
    error = by_arch["i686"].error or ""
    assert URL in error and "ORCH_ENGINE_I686" in error and "fix:" in error
    assert "ORCH_ENGINE_I686" in out
    assert [p.name for p in opts.output_dir.glob("*.whl")] == [by_arch["x86_64"].wheel.filename]  # type: ignore[union-attr]
    assert not local.live


def test_an_engine_going_away_mid_build_fails_only_its_jobs(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, opts = prepared(tmp_path)
    local = engine_for(plan)

    def die(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if "build" in " ".join(cmd):
            engine.down = True
            raise EngineUnreachable("lost the Docker engine (fake)\n  fix: start it")
        return succeed(engine, c, cmd)

    remote = engine_for(plan, die)
    report, opts, out = _run(recipe, plan, opts, local, lambda url, fix: (remote, "x86_64"))
    by_arch = {j.arch: j for j in report.jobs}
    assert by_arch["x86_64"].status == "ok"
    assert by_arch["i686"].status == "failed" and "fix: start it" in (by_arch["i686"].error or "")
    assert not list(opts.output_dir.glob("*i686*"))
    assert "could not remove the run's containers on a routed engine" in out
    assert not local.live and not (opts.meta_dir / "staging").exists()


def test_a_dependency_lost_with_its_engine_blocks_its_jobs_with_the_fix(
    tmp_path: Path, cache_dir: Path
) -> None:
    recipe, plan, mirror = setup(tmp_path, ("x86_64", "i686"), python=("3.9",), deps=("zlib",))
    env = EnvSettings(
        source_mirrors=(str(mirror),), engines={"ORCH_ENGINE_I686": URL}, wheel_prefill=False
    )
    opts = replace(build_options(tmp_path, mirror), env=env)
    local = engine_for(plan)

    def die(engine: FakeEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if c.job.startswith("dep-"):
            raise EngineUnreachable("lost the Docker engine (fake)\n  fix: start it")
        return succeed(engine, c, cmd)

    remote = engine_for(plan, die)
    report, _opts, _out = _run(recipe, plan, opts, local, lambda url, fix: (remote, "x86_64"))
    by_arch = {j.arch: j for j in report.jobs}
    assert by_arch["x86_64"].status == "ok"
    assert by_arch["i686"].status == "blocked"
    assert "zlib" in (by_arch["i686"].error or "") and "fix: start it" in (
        by_arch["i686"].error or ""
    )


def test_mounts_on_a_remote_engine_are_copies_refreshed_when_their_source_changes(
    tmp_path: Path,
) -> None:
    import time

    from orchestrator.container.factory import ContainerFactory, RunIdentity
    from orchestrator.container.types import Mount
    from orchestrator.report.joblog import JobLog
    from tests.support.fakeengine import image

    tools = tmp_path / "tools"
    tools.mkdir()
    engine = FakeEngine([image("img")])
    factory = ContainerFactory(engine, RunIdentity.new(), remote=True, engine_name=URL)
    log = JobLog(tmp_path / "job.log")
    mounts = (Mount(str(tools), "/orch/tools"), Mount(str(tmp_path / "absent"), "/orch/x"))
    with factory.session("img", platform="linux/amd64", job="j", log=log, mounts=mounts) as s:
        (c,) = engine.created
        assert c.spec.mounts == () and c.copied_in == ["/"]  # copied once, absent skipped
        s.run("build", ["true"])
        assert c.copied_in == ["/"]  # unchanged: not copied again
        time.sleep(0.01)
        (tools / "uv").mkdir()  # the wheel cache extracted a tool during the build
        s.run("build", ["true"])
        assert c.copied_in == ["/", "/"]
    log.close()
    assert f"on engine {URL}" in (tmp_path / "job.log").read_text()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (no engine)")
def test_docker_contexts_resolve_as_the_docker_cli_stores_them(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "dc")}
    subprocess.run(
        ["docker", "context", "create", "arm-box", "--docker", "host=tcp://10.9.8.7:2376"],
        env=env,
        check=True,
        capture_output=True,
    )
    routed = engine_routes(
        EnvSettings(engines={"ORCH_ENGINE_AARCH64": "arm-box"}, docker_config=tmp_path / "dc")
    )
    assert routed["aarch64"].is_context
    assert (
        routed["aarch64"].url(EnvSettings(docker_config=tmp_path / "dc")) == "tcp://10.9.8.7:2376"
    )
    with pytest.raises(ConfigError, match="docker context create other"):
        context_endpoint("other", EnvSettings(docker_config=tmp_path / "dc"))
