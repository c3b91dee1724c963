"""An emulated job's build requirements fetched by the host's pip (pipeline/natfetch.py):
the tags and pip arguments chosen per architecture, markers evaluated for the target (the
host's pip against a local find-links directory: no index), when the emulated fetch
stays, and buildenv.fill_set's order of work on the in-memory engine."""

from __future__ import annotations

import json
import subprocess
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator import options
from orchestrator.container.session import Session
from orchestrator.container.types import ContainerHandle, ContainerSpec, ExecResult
from orchestrator.pipeline import buildenv, natfetch
from orchestrator.pipeline.buildenv import FILL_PATH, REQUIRES, WHEELS
from orchestrator.pipeline.wheelcache import WheelCache
from orchestrator.plan.jobs import Job
from orchestrator.report.joblog import JobLog
from tests.support.fakeengine import FakeContainer, FakeEngine, image, tar_of


def _job(arch: str, policy: str = "manylinux_2_31", tag: str = "cp39-cp39", py: str = "3.9") -> Job:
    return Job(
        id=f"x-{arch}",
        python=py,
        python_tag=tag,
        policy=policy,
        platform_tag=f"{policy}_{arch}",
        arch=arch,
        image="img",
        image_source="local",
        runtime_image="rt",
        emulated=True,
    )


@pytest.mark.parametrize("arch", ["aarch64", "ppc64le", "s390x", "armv7l"])
def test_manylinux_tags_run_from_the_image_glibc_down_to_2_17_then_the_aliases(arch: str) -> None:
    target = natfetch.target_for(_job(arch, "manylinux_2_36", "cp311-cp311", "3.11"))
    assert isinstance(target, natfetch.Target)
    assert target.platforms[0] == f"manylinux_2_36_{arch}"
    assert target.platforms[-3:] == (
        f"manylinux_2_17_{arch}",
        f"manylinux2014_{arch}",
        f"linux_{arch}",
    )
    assert len(target.platforms) == 36 - 17 + 1 + 2
    assert target.machine == arch
    args = target.pip_args()
    assert args[:4] == ["--only-binary", ":all:", "--implementation", "cp"]
    assert args[args.index("--python-version") + 1] == "3.11"
    assert args[args.index("--abi") + 1] == "cp311"
    assert args.count("--platform") == len(target.platforms)


def test_musllinux_and_unmodelled_policies() -> None:
    assert natfetch.platform_tags("musllinux_1_2", "aarch64") == (
        "musllinux_1_2_aarch64",
        "musllinux_1_1_aarch64",
        "musllinux_1_0_aarch64",
        "linux_aarch64",
    )
    assert natfetch.platform_tags("manylinux2014", "s390x")[0] == "manylinux_2_17_s390x"
    assert natfetch.platform_tags("manylinux_2_5", "aarch64") == ()
    assert natfetch.platform_tags("weird", "aarch64") == ()


@pytest.mark.parametrize(
    ("tag", "why"),
    [("cp313-cp313t", "free-threaded"), ("pp310-pypy310_pp73", "not CPython")],
)
def test_interpreters_the_host_cannot_stand_in_for_fall_back(tag: str, why: str) -> None:
    found = natfetch.target_for(_job("aarch64", tag=tag))
    assert isinstance(found, str) and why in found


def test_static_requires_as_build_reads_them() -> None:
    assert natfetch.static_requires(None) == natfetch.DEFAULT_REQUIRES
    assert natfetch.static_requires(b"[project]\nname='x'\n") == natfetch.DEFAULT_REQUIRES
    table = b'[build-system]\nrequires = ["b", "a>=1"]\nbuild-backend = "x"\n'
    assert natfetch.static_requires(table) == ("a>=1", "b")
    assert natfetch.static_requires(b"[build-system]\nbuild-backend = 'x'\n") is None
    assert natfetch.static_requires(b"[build-system\n") is None  # build reports it


def _wheel(folder: Path, name: str, *requires: str, tag: str = "py3-none-any") -> Path:
    """A minimal wheel pip accepts (METADATA, WHEEL)."""
    path = folder / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
        meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
        zf.writestr(f"{name}-1.0.dist-info/METADATA", meta)
        wheel = f"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: {tag}\n"
        zf.writestr(f"{name}-1.0.dist-info/WHEEL", wheel)
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return path


def test_a_marker_needing_the_targets_patch_release_falls_back(tmp_path: Path) -> None:
    old = natfetch.target_for(_job("aarch64", tag="cp38-cp38", py="3.8"))
    assert isinstance(old, natfetch.Target)
    plain = _wheel(tmp_path, "a", "packaging", 'tomli; python_version < "3.11"')
    assert natfetch.marker_difference(["a"], [plain], old) is None
    full = 'bar; python_full_version >= "3.8.1"'
    assert "only the target" in (natfetch.marker_difference([full], [], old) or "")
    assert "cannot read" in (natfetch.marker_difference(["bad req ;;"], [], old) or "")


def _index(tmp_path: Path) -> Path:
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links, "top", 'tomli; python_version < "3.11"', 'armonly; platform_machine == "armv7l"')
    _wheel(links, "tomli")
    _wheel(links, "armonly")
    _wheel(links, "native", tag="cp39-cp39-manylinux_2_17_aarch64.manylinux2014_aarch64")
    return links


@pytest.mark.parametrize(
    ("arch", "tag", "py", "expect"),
    [
        ("aarch64", "cp39-cp39", "3.9", {"top", "tomli"}),
        ("armv7l", "cp311-cp311", "3.11", {"top", "armonly"}),
        ("ppc64le", "cp312-cp312", "3.12", {"top"}),
    ],
)
def test_the_host_pip_evaluates_markers_with_the_targets_values(
    tmp_path: Path, arch: str, tag: str, py: str, expect: set[str]
) -> None:
    target = natfetch.target_for(_job(arch, tag=tag, py=py))
    assert isinstance(target, natfetch.Target)
    index = ["--isolated", "--no-index", "--find-links", str(_index(tmp_path))]
    dest = tmp_path / "dest"
    dest.mkdir()
    cmd = natfetch.download_command(target, ["top"], dest, index, no_deps=False)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert {p.name.split("-")[0] for p in dest.glob("*.whl")} == expect


def test_a_platform_wheel_is_picked_by_the_targets_tags_only(tmp_path: Path) -> None:
    index = ["--isolated", "--no-index", "--find-links", str(_index(tmp_path))]
    for arch, found in (("aarch64", True), ("s390x", False)):
        target = natfetch.target_for(_job(arch))
        assert isinstance(target, natfetch.Target)
        dest = tmp_path / arch
        dest.mkdir()
        cmd = natfetch.download_command(target, ["native"], dest, index, no_deps=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert (proc.returncode == 0) == found, proc.stderr
        assert bool(list(dest.glob("native-*.whl"))) == found


def test_the_index_is_the_containers_not_the_hosts_pip_config(tmp_path: Path) -> None:
    settings = replace(
        options.EnvSettings(),
        pip={
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_EXTRA_INDEX_URL": "file:///opt/x",  # a host path: containers get none
            "PIP_DEFAULT_TIMEOUT": "7",
            "PIP_TRUSTED_HOST": "127.0.0.1",
        },
        no_host_ca=True,
    )
    assert "--trusted-host" not in natfetch.index_args(settings, {"PIP_TRUSTED_HOST": ""})
    args = natfetch.index_args(settings)
    assert args[0] == "--isolated"  # no pip.conf, no PIP_FIND_LINKS of the host
    assert args[args.index("--index-url") + 1] == "http://127.0.0.1:9/simple"
    assert "--extra-index-url" not in args and args[args.index("--timeout") + 1] == "7"
    assert args[args.index("--trusted-host") + 1] == "127.0.0.1"
    assert "--cert" not in args
    target = natfetch.target_for(_job("ppc64le"))
    assert isinstance(target, natfetch.Target)
    uv = natfetch.download_command(target, ["uv"], tmp_path, args, no_deps=True)
    assert uv[1:3] == ["-c", natfetch.PIP_FOR_TARGET] and uv[4] == "download"
    assert json.loads(uv[3])["platform_machine"] == "ppc64le"
    assert "--no-deps" in uv and uv[-1] == "uv"
    reqs = natfetch.download_command(target, ["a", "b"], tmp_path, args, no_deps=False)
    assert "--no-deps" not in reqs and reqs[-2:] == ["a", "b"]


def test_a_failed_download_leaves_dest_empty(tmp_path: Path) -> None:
    target = natfetch.target_for(_job("s390x"))
    assert isinstance(target, natfetch.Target)
    settings = replace(
        options.EnvSettings(),
        pip={"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_DEFAULT_TIMEOUT": "1"},
        no_host_ca=True,
    )
    lines: list[str] = []
    why = natfetch.fetch(target, ["nothing-here"], tmp_path, lines.append, settings=settings)
    assert why is not None and "no wheel set" in why
    assert list(tmp_path.iterdir()) == []
    assert any("--platform manylinux_2_31_s390x" in line for line in lines)


# --- buildenv.fill_set's order of work, on the in-memory engine ---------------------------


class _EnvEngine(FakeEngine):
    """Records each command's environment too."""

    def __init__(self, script: Any) -> None:
        super().__init__([image("img", "arm64")], script)
        self.envs: list[tuple[list[str], dict[str, str]]] = []

    def exec(
        self,
        handle: ContainerHandle,
        cmd: Sequence[str],
        on_output: Callable[[bytes], None],
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        self.envs.append((list(cmd), dict(env or {})))
        return super().exec(handle, cmd, on_output, env, workdir)


def _container_script(dynamic: list[str]) -> Any:
    """The fill script: with ORCH_FETCHED it leaves `dynamic` to the host (REQUIRES)."""

    def script(engine: _EnvEngine, c: FakeContainer, cmd: Sequence[str]) -> int:
        if FILL_PATH in cmd and cmd[cmd.index(FILL_PATH) + 1] != "build":
            _, env = engine.envs[-1]
            record = json.dumps({"static": ["setuptools>=61"], "dynamic": dynamic}).encode()
            c.files[f"{WHEELS}/{REQUIRES}"] = tar_of({REQUIRES: record})
            c.files[WHEELS] = tar_of(
                {"wheels/setuptools-1-py3-none-any.whl": b"w", f"wheels/{REQUIRES}": record}
            )
            assert ("ORCH_FETCHED" in env) == ("UV" in env)
        return 0

    return script


def _fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dynamic: list[str], host_fails: str | None
) -> tuple[_EnvEngine, list[tuple[list[str], Path]]]:
    fetched: list[tuple[list[str], Path]] = []

    def fetch(target: Any, reqs: Sequence[str], dest: Path, log: Any, **kw: Any) -> str | None:
        fetched.append((list(reqs) + (["uv"] if kw.get("uv") else []), dest))
        if host_fails and reqs and reqs[0] == host_fails:
            return "no wheel for the target"
        for name in (*reqs, *(["uv"] if kw.get("uv") else [])):
            version = "0.9.1" if name == "uv" else "1"
            (dest / f"{name.split('>')[0]}-{version}-py3-none-any.whl").write_bytes(b"w")
        return None

    monkeypatch.setattr(natfetch, "fetch", fetch)
    monkeypatch.setattr(buildenv, "native_uv", lambda v, log: f"/orch/native/uv-{v}/uv")
    engine = _EnvEngine(_container_script(dynamic))
    cache = WheelCache(tmp_path / "cache")
    log = JobLog(tmp_path / "job.log")
    spec = ContainerSpec(image="img", platform="linux/arm64")
    native = buildenv.NativeFetch(_job("aarch64"), b'[build-system]\nrequires=["setuptools>=61"]\n')
    with Session(engine, spec, log=log, cancel=threading.Event()) as session:
        source = buildenv.fill_set(
            session, cache, "k" * 64, python="/py", src="/src", outdir="/dist", env={},
            mode="fill", native=native,
        )  # fmt: skip
    log.close()
    assert source.status == "miss" and source.built
    return engine, fetched


def test_a_native_fill_fetches_on_the_host_and_installs_the_dynamic_with_the_x86_64_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, fetched = _fill(tmp_path, monkeypatch, ["packaging"], host_fails=None)
    assert [reqs for reqs, _ in fetched] == [["setuptools>=61", "uv"], ["packaging"]]
    cmds = [" ".join(cmd) for cmd, _ in engine.envs]
    [script] = [i for i, c in enumerate(cmds) if f"{FILL_PATH} fill" in c]
    _, env = engine.envs[script]
    assert json.loads(env["ORCH_FETCHED"]) == ["setuptools>=61"]
    assert env["UV"] == "/orch/native/uv-0.9.1/uv"
    after = cmds[script + 1 :]
    assert after[0].startswith("/orch/native/uv-0.9.1/uv pip install packaging --python")
    assert f"{FILL_PATH} build" in after[1]  # the build, in the environment just made
    assert engine.envs[script + 2][1]["ORCH_ENV_RESTORED"] == "1"
    assert not any(" -m pip " in c for c in cmds)  # no emulated pip at all
    text = (tmp_path / "job.log").read_text()
    assert "fetched natively for manylinux_2_31_aarch64 cp39" in text
    [stored] = (tmp_path / "cache" / "sets").glob("*.json")
    assert json.loads(stored.read_text())["dynamic"] == ["packaging"]


def test_a_dynamic_requirement_without_a_wheel_is_fetched_by_emulated_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = _fill(tmp_path, monkeypatch, ["sdistonly"], host_fails="sdistonly")
    cmds = [" ".join(cmd) for cmd, _ in engine.envs]
    [pip] = [c for c in cmds if " -m pip " in c]
    assert pip.startswith("/py -m pip --disable-pip-version-check wheel") and "sdistonly" in pip
    assert cmds.index(pip) < next(i for i, c in enumerate(cmds) if "uv pip install sdistonly" in c)
    text = (tmp_path / "job.log").read_text()
    assert "emulated pip fetches the dynamic requirements: no wheel for the target" in text


def test_static_requirements_without_wheels_leave_the_whole_fill_emulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, fetched = _fill(tmp_path, monkeypatch, [], host_fails="setuptools>=61")
    [env] = [e for c, e in engine.envs if FILL_PATH in c]
    assert "ORCH_FETCHED" not in env and "UV" not in env  # the script fetches, as before
    assert len(fetched) == 1
    text = (tmp_path / "job.log").read_text()
    assert "emulated pip fetches the build requirements: no wheel for the target" in text


def test_a_newer_release_with_only_an_sdist_falls_back(tmp_path: Path) -> None:
    """The emulated pip would build `top` 2.0 from its sdist; the host's --only-binary
    would quietly take 1.0. An older sdist, or a newer one the requirement excludes, is
    no reason."""
    links = tmp_path / "links"
    links.mkdir()
    for name in ("top", "old", "pinned"):
        _wheel(links, name)
    for sdist in ("top-2.0.tar.gz", "old-0.5.tar.gz", "pinned-2.0.tar.gz"):
        (links / sdist).write_bytes(b"")
    target = natfetch.target_for(_job("ppc64le", "manylinux_2_36", "cp311-cp311", "3.11"))
    assert isinstance(target, natfetch.Target)
    index = ["--isolated", "--no-index", "--find-links", str(links)]

    def check(reqs: list[str]) -> str | None:
        dest = tmp_path / "-".join(reqs).replace("<", "")
        dest.mkdir()
        sdists: list[tuple[str, str]] = []
        cmd = natfetch.download_command(target, reqs, dest, index, no_deps=False)
        assert natfetch._download(cmd, lambda _line: None, sdists) is None
        return natfetch.newer_sdist(sdists, dest.glob("*.whl"), reqs, target)

    assert "top 2.0 has no wheel for the target" in (check(["top"]) or "")
    assert check(["old"]) is None
    assert check(["pinned<2"]) is None
    assert "pinned 2.0" in (check(["pinned"]) or "")


def test_a_forky_job_accepts_the_images_own_glibc_tags_as_its_pip_does() -> None:
    """forky repairs to manylinux_2_39 but its glibc is 2.43: the emulated pip there takes
    build requirements tagged up to manylinux_2_43, so the host's download does too."""
    target = natfetch.target_for(_job("aarch64", "manylinux_2_39", "cp314-cp314", "3.14"))
    assert isinstance(target, natfetch.Target)
    assert target.platforms[0] == "manylinux_2_43_aarch64"
    assert "manylinux_2_39_aarch64" in target.platforms
    pypa = replace(_job("aarch64", "manylinux_2_28", "cp311-cp311", "3.11"), image_source="pypa")
    found = natfetch.target_for(pypa)
    assert isinstance(found, natfetch.Target)
    assert found.platforms[0] == "manylinux_2_28_aarch64"


@pytest.mark.parametrize("var", ["PIP_CONSTRAINT", "PIP_PRE", "PIP_NO_BINARY", "PIP_FIND_LINKS"])
def test_a_pip_setting_the_host_does_not_apply_keeps_the_emulated_fetch(
    tmp_path: Path, var: str
) -> None:
    target = natfetch.target_for(_job("s390x"))
    assert isinstance(target, natfetch.Target)
    settings = replace(options.EnvSettings(), no_host_ca=True)
    lines: list[str] = []
    why = natfetch.fetch(target, ["a"], tmp_path, lines.append, settings=settings, env={var: "x"})
    assert why == f"{var} set: the emulated pip applies it"
    assert not lines and not list(tmp_path.iterdir())  # nothing asked, nothing fetched
    assert natfetch.unmodelled_pip(settings, {"PIP_DEFAULT_TIMEOUT": "9"}) is None
