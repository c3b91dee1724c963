"""Static dependencies end to end on the real engine: generated source tarballs served
from 127.0.0.1, built once per (image, arch) in containers, cached by content key,
reused by every Python version; invalidation, corruption, bad checksums, dead URLs with
a mirror, and a failing dependency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import containers_with_label
from tests.support.depworld import build, dep_status, make_dep, write_recipe
from tests.support.run import start_orch

pytestmark = pytest.mark.docker


def test_cold_warm_and_invalidation(x86_images: tuple[str, str], world) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    recipe = write_recipe(tmp_path, base, tarballs)
    cold = build(recipe, tmp_path / "wh1")
    assert cold.returncode == 0, cold.stdout + cold.stderr
    assert dep_status(tmp_path / "wh1") == {"orcha": "built", "orchb": "built", "orchc": "built"}
    assert len(list((tmp_path / "wh1").glob("*.whl"))) == 2  # both Pythons, one build per dep
    # the DAG order: orcha finished before orchb started
    text = cold.stderr
    assert text.index("orcha 1.0 (x86_64) (cache miss): ok") < text.index(
        "orchb 1.0 (x86_64) (cache miss): build"
    )

    warm = build(recipe, tmp_path / "wh2")
    assert warm.returncode == 0, warm.stderr
    assert dep_status(tmp_path / "wh2") == {"orcha": "cached", "orchb": "cached", "orchc": "cached"}

    # Changing orchb's options rebuilds orchb only (it has no dependents).
    recipe = write_recipe(tmp_path, base, tarballs, b_options='["EXTRA=1"]')
    third = build(recipe, tmp_path / "wh3")
    assert third.returncode == 0, third.stderr
    assert dep_status(tmp_path / "wh3") == {"orcha": "cached", "orchb": "built", "orchc": "cached"}


def test_corrupted_entry_then_new_requirement_rebuild_only_what_they_touch(  # type: ignore[no-untyped-def]
    x86_images: tuple[str, str], world, cache_dir: Path
) -> None:
    """One cold build, then two changes in turn (one cold build instead of one per change)."""
    tmp_path, base, tarballs, _ = world
    recipe = write_recipe(tmp_path, base, tarballs, python='["3.9"]')
    assert build(recipe, tmp_path / "wh1").returncode == 0
    # A corrupted artifact: orchc alone rebuilds.
    report = json.loads((tmp_path / "wh1" / ".orch" / "report.json").read_text())
    key = next(d["key"] for d in report["deps"] if d["name"] == "orchc")
    artifact = next(cache_dir.glob(f"deps/*/{key}/artifact.tar.gz"))
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"corrupted!")
    second = build(recipe, tmp_path / "wh2")
    assert second.returncode == 0, second.stderr
    assert dep_status(tmp_path / "wh2") == {"orcha": "cached", "orchb": "cached", "orchc": "built"}
    # A new orcha tarball (another value): orcha and its dependent orchb rebuild; orchc not.
    tarballs["orcha"] = make_dep(tmp_path / "srv", "orcha", "40 + 0")
    recipe = write_recipe(tmp_path, base, tarballs, python='["3.9"]')
    third = build(recipe, tmp_path / "wh3")
    assert third.returncode == 0, third.stderr
    assert dep_status(tmp_path / "wh3") == {"orcha": "built", "orchb": "built", "orchc": "cached"}


def test_bad_checksum_fails_clearly_and_keeps_nothing(
    x86_images: tuple[str, str], world, cache_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    wrong = "0" * 64
    recipe = write_recipe(tmp_path, base, tarballs, sha_override={"orchc": wrong}, python='["3.9"]')
    proc = build(recipe, tmp_path / "wh")
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert f"{base}/orchc-1.0.tar.gz" in out and wrong in out and tarballs["orchc"][1] in out
    assert dep_status(tmp_path / "wh")["orchc"] == "failed"
    assert not list((tmp_path / "wh").glob("*.whl"))
    report = json.loads((tmp_path / "wh" / ".orch" / "report.json").read_text())
    assert report["jobs"][0]["status"] == "blocked"
    assert not (cache_dir / "sources" / wrong).exists()
    assert not any(p.name.startswith(".part") for p in cache_dir.rglob("*"))
    assert not containers_with_label(f"io.orch.run={report['run_id']}")


def test_dead_url_then_mirror(x86_images: tuple[str, str], world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    path, sha = tarballs["orcha"]
    (mirror / sha).write_bytes(path.read_bytes())
    path.unlink()  # only the mirror has orcha now; its first URL is dead too
    recipe = write_recipe(
        tmp_path,
        base,
        tarballs,
        python='["3.9"]',
        first_url_dead=True,
        mirrors=f"mirrors:\n  - directory: {mirror}\n",
    )
    proc = build(recipe, tmp_path / "wh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dep_status(tmp_path / "wh")["orcha"] == "built"


def test_failing_dependency_blocks_jobs_and_shows_log(x86_images: tuple[str, str], world) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    recipe = write_recipe(
        tmp_path, base, tarballs, b_options='["CC=false-compiler"]', python='["3.9"]'
    )
    proc = build(recipe, tmp_path / "wh")
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "dependency orchb (x86_64) failed" in out and "false-compiler" in out  # the log tail
    status = dep_status(tmp_path / "wh")
    assert status["orchb"] == "failed" and status["orcha"] == "built" and status["orchc"] == "built"
    report = json.loads((tmp_path / "wh" / ".orch" / "report.json").read_text())
    assert report["jobs"][0]["status"] == "blocked" and "orchb" in report["jobs"][0]["error"]
    log = next(d["log"] for d in report["deps"] if d["name"] == "orchb")
    assert "false-compiler" in Path(log).read_text()


def test_concurrent_runs_share_the_cache_safely(
    x86_images: tuple[str, str], world, cache_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    recipe = write_recipe(tmp_path, base, tarballs, python='["3.9"]')
    env = {"ORCH_CACHE_DIR": str(cache_dir)}
    procs = [
        start_orch("build", "-f", str(recipe), "-o", str(tmp_path / f"wh{i}"), "--plain", env=env)
        for i in (1, 2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out
    first, second = dep_status(tmp_path / "wh1"), dep_status(tmp_path / "wh2")
    for name in ("orcha", "orchb", "orchc"):
        # exactly one of the two runs built each dependency; the other waited and reused it
        assert sorted([first[name], second[name]]) == ["built", "cached"], (first, second)
