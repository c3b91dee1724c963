"""The wheel cache's keys, hit/miss rules and lock, without an engine."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from orchestrator.container.session import Cancelled
from orchestrator.pipeline import buildenv
from orchestrator.pipeline.buildenv import FILL_PATH, requirement_inputs
from orchestrator.pipeline.wheelcache import WheelCache, set_key, wheels_from_tar
from tests.support.fakeengine import FakeEngine, build
from tests.test_runner import engine_for, options, setup

SETUPTOOLS = (
    b'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
)


def test_key_ignores_order_and_follows_each_input() -> None:
    base = set_key("build", "cp311-cp311", {"a": "1", "b": "2"})
    assert base == set_key("build", "cp311-cp311", {"b": "2", "a": "1"})
    assert base != set_key("build", "cp39-cp39", {"a": "1", "b": "2"})
    assert base != set_key("verify", "cp311-cp311", {"a": "1", "b": "2"})
    assert base != set_key("build", "cp311-cp311", {"a": "1", "b": "3"})


def test_setuptools_key_survives_a_version_bump_but_not_a_new_requirement() -> None:
    v1 = requirement_inputs({"pyproject.toml": SETUPTOOLS + b'[project]\nversion = "1"\n'})
    v2 = requirement_inputs({"pyproject.toml": SETUPTOOLS + b'[project]\nversion = "2"\n'})
    assert v1 == v2
    cython = SETUPTOOLS.replace(b'"setuptools>=61"', b'"setuptools>=61", "cython"')
    assert requirement_inputs({"pyproject.toml": cython}) != v1
    with_setup = requirement_inputs({"pyproject.toml": SETUPTOOLS, "setup.py": b"setup()"})
    assert with_setup != v1  # setup_requires lives there
    assert with_setup != requirement_inputs(
        {"pyproject.toml": SETUPTOOLS, "setup.py": b"setup(setup_requires=['x'])"}
    )


def test_other_backends_key_on_the_whole_pyproject() -> None:
    other = b'[build-system]\nrequires = ["scikit-build-core"]\nbuild-backend = "scikit_build_core.build"\n'
    a = requirement_inputs({"pyproject.toml": other + b"[tool.scikit-build]\nx = 1\n"})
    b = requirement_inputs({"pyproject.toml": other + b"[tool.scikit-build]\nx = 2\n"})
    assert a != b
    broken = requirement_inputs({"pyproject.toml": b"[build-system\n"})
    assert "pyproject.toml" in broken  # unparsable: keyed on its bytes, never an exception


def test_store_then_hit_and_damaged_entries_are_misses(tmp_path: Path) -> None:
    cache = WheelCache.for_image("sha256:0123456789abcdef0123", "x86_64", base=tmp_path)
    assert cache.root == tmp_path / "wheels" / "0123456789ab-x86_64"
    assert cache.lookup("k") is None
    stored = cache.store("k", {"a-1-py3-none-any.whl": b"A", "b-1-py3-none-any.whl": b"B"}, {})
    found = cache.lookup("k")
    assert found is not None and found.wheels == stored.wheels
    assert [p.read_bytes() for p in found.wheels] == [b"A", b"B"]
    (cache.root / "b-1-py3-none-any.whl").write_bytes(b"changed")
    assert cache.lookup("k") is None  # a changed wheel is never handed out
    (cache.root / "b-1-py3-none-any.whl").unlink()
    assert cache.lookup("k") is None
    (cache.root / "sets" / "k.json").write_text("{not json")
    assert cache.lookup("k") is None


def test_store_keeps_existing_wheels_for_other_sets(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path)
    cache.store("one", {"a-1-py3-none-any.whl": b"first"}, {})
    cache.store("two", {"a-1-py3-none-any.whl": b"second", "../evil.whl": b"x"}, {})
    assert (tmp_path / "a-1-py3-none-any.whl").read_bytes() == b"first"
    assert cache.lookup("one") is not None and cache.lookup("two") is not None
    listed = json.loads((tmp_path / "sets" / "two.json").read_text())["wheels"]
    assert listed == {"a-1-py3-none-any.whl": hashlib.sha256(b"first").hexdigest()}
    assert not list(tmp_path.parent.glob("evil.whl"))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_filling_serialises_jobs_so_the_second_one_hits(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path)
    events: list[str] = []

    def job(name: str) -> None:
        with cache.filling("k", threading.Event()):
            if cache.lookup("k") is not None:
                events.append(f"{name}: hit")
                return
            events.append(f"{name}: fill start")
            time.sleep(0.3)
            cache.store("k", {"a-1-py3-none-any.whl": b"A"}, {})
            events.append(f"{name}: fill end")

    threads = [threading.Thread(target=job, args=(n,)) for n in ("j1", "j2")]
    threads[0].start()
    time.sleep(0.05)
    threads[1].start()
    for t in threads:
        t.join(10)
    assert events == ["j1: fill start", "j1: fill end", "j2: hit"]


def test_waiting_for_the_lock_ends_on_cancel(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path)
    cancel = threading.Event()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with cache.filling("k", threading.Event()):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(Cancelled), cache.filling("k", cancel):
        pass
    release.set()
    t.join(5)


def test_wheels_from_tar_takes_regular_wheels_only() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("wheels/a-1-py3-none-any.whl", b"A"), ("wheels/notes.txt", b"n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("wheels/b-1-py3-none-any.whl")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert wheels_from_tar(buf.getvalue()) == {"a-1-py3-none-any.whl": b"A"}


# --- the runner with the wheel cache, on the in-memory engine ----------------------------


def _fills(engine: FakeEngine) -> int:
    """The misses' fill runs (a hit runs the same script in its "build" mode)."""
    return sum(f"{FILL_PATH} fill" in " ".join(cmd) for c in engine.created for cmd in c.execs)


def test_second_run_hits_and_offline_cuts_the_network(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path)
    first = engine_for(plan)
    report, _ = build(recipe, plan, options(tmp_path, mirror), first)
    assert [j.wheel_cache for j in report.jobs] == [{"build": "miss"}] * 2
    assert _fills(first) == 2  # one per Python: the sets differ by interpreter
    assert all(c.spec.network_mode is None for c in first.created)

    again = engine_for(plan)
    report, _ = build(recipe, plan, options(tmp_path, mirror, offline=True), again)
    assert [j.status for j in report.jobs] == ["ok", "ok"]
    assert [j.wheel_cache for j in report.jobs] == [{"build": "hit"}] * 2
    assert _fills(again) == 0
    assert {c.spec.network_mode for c in again.created} == {"none"}


def test_offline_on_an_empty_cache_fails_with_the_fix(tmp_path: Path, cache_dir: Path) -> None:
    recipe, plan, mirror = setup(tmp_path, python=("3.9",))
    engine = engine_for(plan)
    opts = options(tmp_path, mirror, offline=True)
    report, _ = build(recipe, plan, opts, engine)
    [job] = report.jobs
    assert (job.status, job.failed_stage) == ("failed", "build")
    assert "run once with the network" in (job.error or "")
    assert not list(opts.output_dir.glob("*.whl")) and not engine.live
    assert not list((cache_dir / "wheels").glob("*/sets/*.json"))


def _wheel_with_script(path: Path, script: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("uv-1.0.data/scripts/uv", script)
        zf.writestr("uv-1.0.dist-info/METADATA", "Name: uv\n")
    return path


def test_tool_is_extracted_once_and_kept_out_of_the_copied_set(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path / "c")
    wheel = _wheel_with_script(tmp_path / "uv-1.0-py3-none-any.whl", b"#!binary")
    stored = cache.store("k", {wheel.name: wheel.read_bytes(), "a-1-py3-none-any.whl": b"A"}, {})
    uv = cache.tool(stored.wheels[1], "uv")
    assert uv is not None and uv.read_bytes() == b"#!binary" and uv.stat().st_mode & 0o111
    assert uv.parent.parent == cache.tools
    assert cache.tool(stored.wheels[1], "uv") == uv  # present: reused
    assert cache.tool(stored.wheels[0], "uv") is None  # a wheel without that script
    assert not list(cache.tools.glob(".*"))  # no temporary directories left
    with tarfile.open(fileobj=io.BytesIO(stored.tar("wheels", skip=("uv-",)))) as tar:
        assert tar.getnames() == ["wheels", "wheels/a-1-py3-none-any.whl"]


def test_a_set_keeps_what_its_filler_recorded(tmp_path: Path) -> None:
    """The dynamic requirements recorded at fill time come back with the hit (a hit then
    installs them without asking the backend again)."""
    cache = WheelCache(tmp_path)
    note = {"purpose": "build", "static": ["setuptools>=61"], "dynamic": ["cython"]}
    cache.store("k", {"a-1.0-py3-none-any.whl": b"a"}, note)
    found = cache.lookup("k")
    assert found is not None and found.note == note
    assert buildenv._dynamic(found.note) == ("cython",)
    assert buildenv._dynamic({"purpose": "build"}) is None  # a set filled before: ask
    assert buildenv._dynamic({"dynamic": [1]}) is None


def test_the_fill_record_is_read_from_the_containers_tar() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = json.dumps({"static": ["setuptools"], "dynamic": []}).encode()
        info = tarfile.TarInfo(f"wheels/{buildenv.REQUIRES}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert buildenv._requires(buf.getvalue()) == {"static": ["setuptools"], "dynamic": []}
    assert buildenv._requires(_empty_tar()) == {}


def test_build_command_passes_the_recorded_requirements() -> None:
    plain = buildenv.build_command("/py", "/out", "/src")
    known = buildenv.build_command("/py", "/out", "/src", ("cython>=3",))
    assert known[:-1] == plain and json.loads(known[-1]) == ["cython>=3"]
    assert json.loads(buildenv.build_command("/py", "/out", "/src", ())[-1]) == []


def test_build_environment_is_kept_per_set(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path)
    assert not cache.env_tar("k").exists()
    cache.store_env("k", b"tar bytes")
    assert cache.env_tar("k").read_bytes() == b"tar bytes"
    assert not cache.env_tar("other").exists()


def _empty_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    return buf.getvalue()
