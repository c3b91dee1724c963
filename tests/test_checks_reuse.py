"""Checks reused for an identical wheel (pipeline/checks.py): the key follows every input
and ignores the zip's timestamps; on the in-memory engine a second run creates no
verification container, a failed check records nothing, --recheck runs them again; with
the real engine a second unchanged build reuses and a changed test command does not."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator.pipeline import checks
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from tests.support.fakeengine import FakeContainer, FakeEngine, build, image, succeed
from tests.support.run import orch
from tests.test_runner import engine_for, options, setup

RECIPE = """\
schema: 1
name: demo
project: .
python: ["3.11"]
platforms: [manylinux_2_31]
archs: [x86_64]
dependencies:
  - name: zlib
    version: "1.3"
    source: {url: "http://127.0.0.1:9/z.tar.gz", sha256: "%s"}
    build: {system: make}
audit:
  allow-exports: ["demo_*"]
test:
  command: python -c "import demo"
  requires: [packaging]
"""


def _wheel(path: Path, members: dict[str, bytes], when: tuple[int, ...], mode: int = 0o644) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=when)  # type: ignore[arg-type]
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


T0 = (2020, 1, 1, 0, 0, 0)
MEMBERS = {"demo/__init__.py": b"x = 1\n", "demo/_c.so": b"\x7fELF..."}


def test_the_content_digest_ignores_timestamps_and_member_order(tmp_path: Path) -> None:
    a = _wheel(tmp_path / "a.whl", MEMBERS, T0)
    b = _wheel(tmp_path / "b.whl", dict(reversed(MEMBERS.items())), (2026, 11, 30, 1, 2, 4))
    assert a.read_bytes() != b.read_bytes()
    assert checks.wheel_digest(a) == checks.wheel_digest(b)
    other_bytes = _wheel(tmp_path / "c.whl", {**MEMBERS, "demo/_c.so": b"\x7fELF.!."}, T0)
    other_mode = _wheel(tmp_path / "d.whl", MEMBERS, T0, mode=0o755)
    other_name = _wheel(tmp_path / "e.whl", {"demo/__init__.pyi": b"x = 1\n"}, T0)
    digests = {checks.wheel_digest(p) for p in (a, other_bytes, other_mode, other_name)}
    assert len(digests) == 4


def _key_inputs(tmp_path: Path, recipe_text: str = RECIPE) -> dict[str, Any]:
    project = tmp_path / "p"
    project.mkdir(exist_ok=True)
    (project / "setup.py").write_text("")
    (project / "orch.yaml").write_text(recipe_text % ("0" * 64))
    recipe = load_recipe(project / "orch.yaml")
    (job,) = make_plan(recipe, host_arch="x86_64").jobs
    wheel = _wheel(tmp_path / "demo-1.0-cp311-cp311-linux_x86_64.whl", MEMBERS, T0)
    return dict(
        wheel=wheel,
        recipe=recipe,
        job=job,
        images=[("runtime:1", "sha256:aa"), ("stock:bookworm", "sha256:bb")],
        linked={"zlib": "k1"},
        offline=False,
    )


def _key(**kw: Any) -> str:
    wheel, recipe, job = kw.pop("wheel"), kw.pop("recipe"), kw.pop("job")
    images, linked = kw.pop("images"), kw.pop("linked")
    return checks.checks_key(wheel, recipe, job, images, linked, **kw).key


def test_every_input_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _key_inputs(tmp_path)
    key = _key(**base)
    assert _key(**base) == key  # stable
    recipe, job = base["recipe"], base["job"]
    test, audit = recipe.test, recipe.audit
    renamed = tmp_path / "demo-1.0-cp311-cp311-manylinux_2_31_x86_64.whl"
    renamed.write_bytes(base["wheel"].read_bytes())
    changed = {
        "wheel content": {"wheel": _wheel(tmp_path / "x.whl", {"a": b"b"}, T0)},
        "wheel name": {"wheel": renamed},
        "job id": {"job": dataclasses.replace(job, id="other")},
        "job policy": {"job": dataclasses.replace(job, policy="manylinux_2_17")},
        "job tag": {"job": dataclasses.replace(job, platform_tag="manylinux_2_17_x86_64")},
        "audit section": {
            "recipe": dataclasses.replace(
                recipe, audit=dataclasses.replace(audit, allow_exports=("other_*",))
            )
        },
        "bundled dependencies": {"recipe": dataclasses.replace(recipe, dependencies=())},
        "linked artifact": {"linked": {"zlib": "k2"}},
        "test command": {
            "recipe": dataclasses.replace(
                recipe, test=dataclasses.replace(test, command="python -c 'import demo, sys'")
            )
        },
        "test requires": {
            "recipe": dataclasses.replace(recipe, test=dataclasses.replace(test, requires=()))
        },
        "test imports": {
            "recipe": dataclasses.replace(recipe, test=dataclasses.replace(test, imports=("demo",)))
        },
        "test coexist": {
            "recipe": dataclasses.replace(
                recipe, test=dataclasses.replace(test, coexist=("numpy",))
            )
        },
        "stock images": {
            "recipe": dataclasses.replace(
                recipe, test=dataclasses.replace(test, stock_images="never")
            )
        },
        "an image's id": {"images": [("runtime:1", "sha256:a2"), ("stock:bookworm", "sha256:bb")]},
        "one image less": {"images": [("runtime:1", "sha256:aa")]},
        "offline": {"offline": True},
        "what verification installs": {"installed": ["packaging-25.0-py3-none-any.whl"]},
        "the native uv": {"uv": "/orch/native/uv-0.9.1/uv"},
    }
    keys = {what: _key(**{**base, **kw}) for what, kw in changed.items()}
    unchanged = [what for what, k in keys.items() if k == key]
    assert not unchanged, unchanged
    monkeypatch.setattr(checks, "orch_digest", lambda: "another orch")
    assert _key(**base) != key


def test_orchs_own_code_is_in_the_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "orchestrator"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("A = 1\n")
    monkeypatch.setattr(checks, "PACKAGE", pkg)
    checks.orch_digest.cache_clear()
    try:
        first = checks.orch_digest()
        (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"bytecode")
        checks.orch_digest.cache_clear()
        assert checks.orch_digest() == first  # bytecode is not code
        (pkg / "a.py").write_text("A = 2\n")
        checks.orch_digest.cache_clear()
        assert checks.orch_digest() != first
    finally:
        checks.orch_digest.cache_clear()


def test_a_record_is_whole_or_absent(tmp_path: Path) -> None:
    key = checks.checks_key(**_key_inputs(tmp_path))
    assert checks.lookup(key, tmp_path / "cache") is None
    stored = checks.store(key, {"findings": []}, [{"image": "runtime:1"}], tmp_path / "cache")
    found = checks.lookup(key, tmp_path / "cache")
    assert found == stored and found.verify == ({"image": "runtime:1"},)
    assert [p.name for p in (tmp_path / "cache" / "checks").iterdir()] == [f"{key.key}.json"]
    (tmp_path / "cache" / "checks" / f"{key.key}.json").write_text('{"schema": 1, "key"')
    assert checks.lookup(key, tmp_path / "cache") is None  # torn or foreign: a miss


# --- the in-memory engine ---------------------------------------------------------------


def _passing_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host-side audit reads real ELF files; the fake wheel has none."""
    import orchestrator.pipeline.job as job_module
    from orchestrator.audit.model import AuditResult

    def audit(wheel: Path, recipe: Any, log: Any, linked: Any = None) -> AuditResult:
        log.line("[audit] checked")
        return AuditResult(wheel.name, (), ())

    monkeypatch.setattr(job_module, "audit_job_wheel", audit)


def _verifications(engine: FakeEngine) -> list[FakeContainer]:
    return [c for c in engine.created if c.job.endswith("-verify")]


def _engine(plan: Any, script: Any = succeed) -> FakeEngine:
    engine = engine_for(plan, script)
    for job in plan.jobs:  # the runtime image the checks run in
        engine.images.setdefault(job.runtime_image, image(job.runtime_image))
    return engine


def test_a_second_run_reuses_the_checks_and_recheck_runs_them(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _passing_audit(monkeypatch)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    opts = options(tmp_path, mirror, audit=True, verify=True, recheck=False)
    first, _ = build(recipe, plan, opts, engine := _engine(plan))
    assert first.jobs[0].status == "ok" and len(_verifications(engine)) == 1
    assert first.jobs[0].checks["status"] == "run"
    assert len(list((cache_dir / "checks").glob("*.json"))) == 1

    second, out = build(recipe, plan, opts, engine := _engine(plan))
    job = second.jobs[0]
    assert job.status == "ok" and not _verifications(engine)  # no verification container
    assert job.checks["status"] == "reused"
    assert job.verify and all(v["reused"] and v["status"] == "passed" for v in job.verify)
    assert job.audit is not None and job.audit["reused"]
    assert "checks reused" in job.stages and "verify" not in job.stages
    assert "(checks reused)" in out  # the progress line
    log = Path(job.log or "").read_text()
    (line,) = [ln for ln in log.splitlines() if ln.startswith("[checks] reused")]
    assert (
        "--recheck" in line
        and checks.wheel_digest(
            opts.output_dir / job.wheel.filename  # type: ignore[union-attr]
        )[:16]
        in line
    )
    assert "[audit] checked" not in log
    report = json.loads(opts.report_file.read_text())
    assert report["jobs"][0]["checks"]["status"] == "reused"

    third, _ = build(recipe, plan, dataclasses.replace(opts, recheck=True), engine := _engine(plan))
    assert third.jobs[0].checks["status"] == "run" and len(_verifications(engine)) == 1


def test_a_failed_verification_records_nothing(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _passing_audit(monkeypatch)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    opts = options(tmp_path, mirror, audit=True, verify=True, recheck=False)

    def import_fails(engine: FakeEngine, c: FakeContainer, cmd: Any) -> int:
        return (
            1
            if c.job.endswith("-verify") and "import" in " ".join(cmd)
            else succeed(engine, c, cmd)
        )

    failed, _ = build(recipe, plan, opts, _engine(plan, import_fails))
    assert (failed.jobs[0].status, failed.jobs[0].failed_stage) == ("failed", "verify")
    assert not list((cache_dir / "checks").glob("*"))  # nothing recorded, nothing poisoned
    again, _ = build(recipe, plan, opts, engine := _engine(plan, import_fails))
    assert again.jobs[0].failed_stage == "verify" and _verifications(engine)


def test_a_new_image_id_runs_the_checks_again(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _passing_audit(monkeypatch)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    opts = options(tmp_path, mirror, audit=True, verify=True, recheck=False)
    build(recipe, plan, opts, _engine(plan))
    engine = _engine(plan)
    runtime = plan.jobs[0].runtime_image
    engine.images[runtime] = dataclasses.replace(engine.images[runtime], id="sha256:rebuilt")
    report, _ = build(recipe, plan, opts, engine)
    assert report.jobs[0].checks["status"] == "run" and _verifications(engine)


def test_an_audit_a_tool_could_not_finish_is_not_recorded(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # auditwheel timed out (or abi3audit failed): the audit passes with a warning, but an
    # identical wheel must be audited again, not pass on this half answer forever
    import orchestrator.pipeline.job as job_module
    from orchestrator.audit.model import WARNING, AuditResult, make_finding

    def audit(wheel: Path, recipe: Any, log: Any, linked: Any = None) -> AuditResult:
        f = make_finding("tag", WARNING, "auditwheel gave no answer (timeout)", partial=True)
        return AuditResult(wheel.name, (), (f,))

    monkeypatch.setattr(job_module, "audit_job_wheel", audit)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    opts = options(tmp_path, mirror, audit=True, verify=True, recheck=False)
    first, _ = build(recipe, plan, opts, _engine(plan))
    assert first.jobs[0].status == "ok" and first.jobs[0].checks.get("status") != "run"
    assert not list((cache_dir / "checks").glob("*.json"))
    again, _ = build(recipe, plan, opts, engine := _engine(plan))
    assert again.jobs[0].status == "ok" and _verifications(engine)  # run again


def test_a_wheel_that_is_not_a_zip_fails_at_the_audit_not_in_the_lookup(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.pipeline.job as job_module

    real_copy_out = job_module._JobRun.copy_out

    def broken(self: Any, session: Any) -> Path:
        wheel = real_copy_out(self, session)
        wheel.write_bytes(b"not a zip")
        return wheel

    monkeypatch.setattr(job_module._JobRun, "copy_out", broken)
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    opts = options(tmp_path, mirror, audit=True, verify=True, recheck=False)
    report, _ = build(recipe, plan, opts, _engine(plan))
    job = report.jobs[0]
    assert job.status == "failed" and job.failed_stage in ("audit", "verify")
    log = Path(job.log or "").read_text()
    assert "[checks] not looked up (BadZipFile" in log


def test_a_refilled_verification_set_is_a_new_key(tmp_path: Path, cache_dir: Path) -> None:
    from orchestrator.pipeline.verify import _verify_set_key, installed_sets
    from orchestrator.pipeline.wheelcache import WheelCache

    base = _key_inputs(tmp_path)
    recipe, job, wheel = base["recipe"], base["job"], base["wheel"]
    images = [("runtime:1", "sha256:aa")]
    assert installed_sets(recipe, job, wheel, images) is None  # not filled: the checks run
    key = _verify_set_key(recipe, job, wheel)
    assert key is not None
    cache = WheelCache.for_image("sha256:aa", job.arch)
    cache.store(key, {"packaging-24.0-py3-none-any.whl": b"w1"}, {"purpose": "verify"})
    first = installed_sets(recipe, job, wheel, images)
    cache.store(key, {"packaging-25.0-py3-none-any.whl": b"w2"}, {"purpose": "verify"})
    second = installed_sets(recipe, job, wheel, images)
    assert first == ["packaging-24.0-py3-none-any.whl"] and second != first


# --- the real engine --------------------------------------------------------------------


@pytest.mark.docker
def test_an_unchanged_rebuild_reuses_its_checks_and_a_changed_test_does_not(
    x86_images: tuple[str, str], project_copy: Path, cache_dir: Path, tmp_path: Path
) -> None:
    recipe = project_copy / "orch.yaml"
    text = recipe.read_text().replace('python: ["3.9", "3.11"]', 'python: ["3.9"]')
    recipe.write_text(text)
    env = {"ORCH_RECHECK": "0"}

    def run(name: str) -> dict[str, Any]:
        out = tmp_path / name
        proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (job,) = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
        assert job["status"] == "ok"
        return dict(job)

    first = run("first")
    assert first["checks"]["status"] == "run" and "verify" in first["stages"]
    second = run("second")
    assert second["checks"] == {**first["checks"], "status": "reused", "written": ANY}
    assert "verify" not in second["stages"] and second["verify"][0]["status"] == "passed"
    log = Path(second["log"]).read_text()
    assert "[checks] reused" in log
    assert "build environment mounted read-only" in log  # nothing of it copied in

    recipe.write_text(text.replace("print('libbz2'", "print('bz2'"))  # the test command
    third = run("third")
    assert third["checks"]["status"] == "run" and "verify" in third["stages"]
    assert "[checks] reused" not in Path(third["log"]).read_text()


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


# --- the copy in: one engine copy ---------------------------------------------------------


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def test_the_project_and_the_prefix_go_in_as_one_tar_rooted_at_slash() -> None:
    import io
    import tarfile

    from orchestrator.errors import OrchError
    from orchestrator.util.archive import rooted_tar

    project = _tar({"src/setup.py": b"setup()", "./src/pkg/a.py": b"a"})
    prefix = _tar({"deps/lib/libz.a": b"!<arch>\n"}, links={"deps/lib/libz2.a": "deps/lib/libz.a"})
    data = rooted_tar([(project, "/orch"), (prefix, "/opt/orch")], dirs=("/orch", "/opt/orch"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert list(members)[:2] == ["orch", "opt/orch"] and members["orch"].mode == 0o755
        assert set(members) == {
            "orch",
            "opt/orch",
            "orch/src/setup.py",
            "orch/src/pkg/a.py",
            "opt/orch/deps/lib/libz.a",
            "opt/orch/deps/lib/libz2.a",
        }
        assert members["opt/orch/deps/lib/libz2.a"].linkname == "opt/orch/deps/lib/libz.a"
        file = tar.extractfile("orch/src/setup.py")
        assert file is not None and file.read() == b"setup()"
    with pytest.raises(OrchError, match="leaves orch"):
        rooted_tar([(_tar({"../etc/passwd": b"x"}), "/orch")])


def test_a_large_project_goes_in_without_re_packing(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.pipeline import build as build_module

    calls: list[tuple[str, Any]] = []

    class Recorder:
        def put_tar(self, data: bytes, target: str) -> None:
            calls.append(("put_tar", (len(data), target)))

        def mkdirs(self, *paths: str) -> None:
            calls.append(("mkdirs", paths))

    recipe = type("R", (), {"project": type("P", (), {"kind": "tree"})()})()
    project, prefix = _tar({"src/setup.py": b"setup()"}), _tar({"deps/lib/libz.a": b"a"})
    build_module.copy_project(Recorder(), recipe, project, [(prefix, "/opt/orch")])  # type: ignore[arg-type]
    assert [c[0] for c in calls] == ["put_tar"] and calls[0][1][1] == "/"  # one copy
    calls.clear()
    monkeypatch.setattr(build_module, "ONE_COPY_LIMIT", len(project))  # now "large"
    build_module.copy_project(Recorder(), recipe, project, [(prefix, "/opt/orch")])  # type: ignore[arg-type]
    assert calls == [
        ("mkdirs", ("/orch", build_module.DIST, "/opt/orch")),
        ("put_tar", (len(project), "/orch")),
        ("put_tar", (len(prefix), "/opt/orch")),
    ]


def test_the_reports_say_checks_reused() -> None:
    from orchestrator.report import to_html, to_markdown

    job = {
        "id": "cp39-manylinux_2_31_x86_64",
        "status": "ok",
        "seconds": 1.5,
        "wheel": {"filename": "demo-1.0-cp39-cp39-manylinux_2_31_x86_64.whl", "size": 1},
        "checks": {"status": "reused", "key": "k", "written": "2026-11-30 00:48:47"},
    }
    report = {"name": "demo", "recipe": "orch.yaml", "jobs": [job], "deps": [], "images": []}
    assert "ok (checks reused)" in to_markdown(report)
    assert "reused: the identical wheel passed them on 2026-11-30 00:48:47" in to_html(report)
    ran = {**job, "checks": {"status": "run", "key": "k"}}
    assert "checks reused" not in to_markdown({**report, "jobs": [ran]})


# --- the kept build environment, mounted -------------------------------------------------


def test_a_hit_mounts_the_kept_environment_read_only_and_copies_nothing_of_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    from orchestrator.pipeline.buildenv import BUILD_ENV_DIR, FILL_PATH
    from tests.support.fakeengine import tar_of

    def keeps_an_env(engine: FakeEngine, c: FakeContainer, cmd: Any) -> int:
        if FILL_PATH in " ".join(cmd):  # the fill made the environment: kept after the build
            c.files[BUILD_ENV_DIR] = tar_of({"orch-build-env/bin/python": b"#!/bin/sh\n"})
        return succeed(engine, c, cmd)

    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    opts = options(tmp_path, mirror)
    build(recipe, plan, opts, _engine(plan, keeps_an_env))  # cold: fills, keeps the env
    report, _ = build(recipe, plan, opts, engine := _engine(plan, keeps_an_env))
    assert report.jobs[0].status == "ok"
    (c,) = [c for c in engine.created if c.job == plan.jobs[0].id]
    (mount,) = [m for m in c.spec.mounts if m.target == BUILD_ENV_DIR]
    assert (
        mount.read_only and (Path(mount.source) / "bin" / "python").read_bytes() == b"#!/bin/sh\n"
    )
    assert "/tmp" not in c.copied_in  # the environment's tar is not copied in
    assert not any("/orch/wheels" in n for n in _names(c))  # nor the wheels: nothing installs
    log = Path(report.jobs[0].log or "").read_text()
    assert "build environment mounted read-only" in log


def _names(c: FakeContainer) -> list[str]:
    import io
    import tarfile

    names: list[str] = []
    for target, data in c.tars:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names += [f"{target.rstrip('/')}/{n}" for n in tar.getnames()]
    return names


def test_the_environment_tree_is_extracted_once_and_never_outside(tmp_path: Path) -> None:
    from orchestrator.pipeline.wheelcache import WheelCache

    cache = WheelCache(tmp_path / "wc")
    (cache.root / "envs").mkdir(parents=True)
    cache.env_tar("k").write_bytes(_tar({"orch-build-env/bin/python": b"py"}))
    tree = cache.env_tree("k", "orch-build-env")
    assert tree is not None and (tree / "bin" / "python").read_bytes() == b"py"
    assert cache.env_tree("k", "orch-build-env") == tree  # extracted once
    # a refilled set's new tar never serves the old tree
    cache.store_env("k", _tar({"orch-build-env/bin/python": b"py2"}))
    tree2 = cache.env_tree("k", "orch-build-env")
    assert tree2 is not None and tree2 != tree
    assert (tree2 / "bin" / "python").read_bytes() == b"py2"
    cache.env_tar("bad").write_bytes(_tar({"../../escaped": b"x"}))
    assert cache.env_tree("bad", "orch-build-env") is None
    assert not (tmp_path / "escaped").exists() and not (cache.root / "escaped").exists()
    assert cache.env_tree("absent", "orch-build-env") is None
    assert not [p for p in (cache.root / "envs").iterdir() if p.name.endswith(".tmp")]


def test_stale_trees_and_half_extractions_are_swept_once_an_hour_old(tmp_path: Path) -> None:
    import os

    from orchestrator.pipeline.wheelcache import WheelCache

    cache = WheelCache(tmp_path / "wc")
    envs = cache.root / "envs"
    envs.mkdir(parents=True)
    old_tree, young_tree, half = envs / "k.1-1.d", envs / "k.2-2.d", envs / ".k.3-3.d.x.tmp"
    for d in (old_tree, young_tree, half):
        (d / "orch-build-env").mkdir(parents=True)
    for d in (old_tree, half):
        os.utime(d, (1, 1))  # long ago: no running job mounts it
    cache.store_env("k", _tar({"orch-build-env/bin/python": b"py"}))
    tree = cache.env_tree("k", "orch-build-env")
    assert tree is not None and tree.parent.exists()
    assert not old_tree.exists() and not half.exists()
    assert young_tree.exists()  # a job of a run still going may have it mounted
