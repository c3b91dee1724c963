"""The dependency artifact cache: keys, entries, verification, locking, export/import."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing
import tarfile
import time
from multiprocessing.queues import Queue
from pathlib import Path

import pytest

from orchestrator.deps.cache import (
    ARTIFACT,
    META,
    CacheError,
    DepCache,
    dependency_key,
)
from orchestrator.errors import ConfigError
from orchestrator.recipe.model import DependencySpec, Exports, SourceSpec

SHA = "ab" * 32


def make_dep(**changes: object) -> DependencySpec:
    dep = DependencySpec(
        name="libpng",
        version="1.6.43",
        source=SourceSpec(
            urls=("https://example.invalid/libpng.tar.gz",),
            sha256=SHA,
            filename="libpng-1.6.43.tar.gz",
        ),
        build_system="cmake",
        options=("-DPNG_SHARED=OFF",),
        env=(("CFLAGS", "-O2"),),
        requires=("zlib",),
        exports=Exports(libs=("png16",), pkg_config=("libpng",)),
        origin="orch.yaml:12",
    )
    return dataclasses.replace(dep, **changes)  # type: ignore[arg-type]


def key_of(dep: DependencySpec, tmp: Path, **over: str) -> str:
    args = {"image_id": "sha256:img", "arch": "x86_64", "toolchain": "gcc 12.2"} | over
    zkey = over.get("zlib_key", "1" * 64)
    return dependency_key(
        dep,
        dep_keys={"zlib": zkey},
        image_id=args["image_id"],
        arch=args["arch"],
        toolchain=args["toolchain"],
        recipe_dir=tmp,
    )


# --- keys ---------------------------------------------------------------------------


def test_key_ignores_where_and_how_the_source_is_found(tmp_path: Path) -> None:
    base = key_of(make_dep(), tmp_path)
    moved = make_dep(
        origin="other.yaml:99",
        source=SourceSpec(
            urls=("http://mirror/a", "http://mirror/b"), sha256=SHA, filename="renamed.tar.gz"
        ),
    )
    assert key_of(moved, tmp_path) == base
    assert key_of(make_dep(env=(("CFLAGS", "-O2"),)), tmp_path) == base


@pytest.mark.parametrize(
    "change",
    [
        {"options": ("-DPNG_SHARED=OFF", "-DPNG_TESTS=OFF")},
        {"version": "1.6.44"},
        {"build_system": "autotools"},
        {"script": "make install"},
        {"env": (("CFLAGS", "-O3"),)},
        {"exports": Exports(libs=("png",))},
        {"source": SourceSpec(urls=(), sha256="cd" * 32, filename="libpng-1.6.43.tar.gz")},
        {"source": SourceSpec(urls=(), sha256=SHA, filename="x", strip_components=0)},
    ],
)
def test_key_changes_with_each_input(tmp_path: Path, change: dict[str, object]) -> None:
    assert key_of(make_dep(**change), tmp_path) != key_of(make_dep(), tmp_path)


def test_key_changes_with_environment_inputs(tmp_path: Path) -> None:
    base = key_of(make_dep(), tmp_path)
    assert key_of(make_dep(), tmp_path, image_id="sha256:other") != base
    assert key_of(make_dep(), tmp_path, arch="aarch64") != base
    assert key_of(make_dep(), tmp_path, toolchain="gcc 13.1") != base
    # A requirement's key changing (anything below it changed) changes ours.
    assert key_of(make_dep(), tmp_path, zlib_key="2" * 64) != base


def test_key_hashes_patch_contents(tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a\n+++ b\n")
    dep = make_dep(source=dataclasses.replace(make_dep().source, patches=(Path("fix.patch"),)))
    k1 = key_of(dep, tmp_path)
    assert k1 != key_of(make_dep(), tmp_path)
    patch.write_text("--- a\n+++ c\n")
    assert key_of(dep, tmp_path) != k1
    patch.unlink()
    with pytest.raises(ConfigError, match=r"fix\.patch"):
        key_of(dep, tmp_path)


def test_key_needs_requirement_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="zlib"):
        dependency_key(
            make_dep(), dep_keys={}, image_id="i", arch="x86_64", toolchain="t", recipe_dir=tmp_path
        )


# --- entries ------------------------------------------------------------------------


def make_artifact(path: Path, content: str = "static lib") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = content.encode()
        info = tarfile.TarInfo("lib/libpng16.a")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def stored(cache: DepCache, key: str, tmp: Path) -> Path:
    art = make_artifact(tmp / f"{key[:6]}.tar.gz", key)
    return cache.store(key, art, {"name": "libpng", "version": "1.6.43", "build_seconds": 1.5})


K1, K2 = "1" * 64, "2" * 64


def test_store_and_lookup(tmp_path: Path) -> None:
    cache = DepCache(tmp_path / "cache")
    assert cache.lookup(K1) is None
    art = stored(cache, K1, tmp_path)
    assert cache.lookup(K1) == art == tmp_path / "cache" / "deps" / "11" / K1 / ARTIFACT
    meta = json.loads((art.parent / META).read_text())
    assert meta["name"] == "libpng" and meta["key"] == K1 and meta["size"] == art.stat().st_size
    assert [e.key for e in cache.entries()] == [K1]
    assert list((tmp_path / "cache" / "deps" / ".tmp").iterdir()) == []


def test_corrupted_artifact_is_removed(tmp_path: Path) -> None:
    lines: list[str] = []
    cache = DepCache(tmp_path / "cache", log=lines.append)
    art = stored(cache, K1, tmp_path)
    art.write_bytes(art.read_bytes()[:-3] + b"xyz")
    assert cache.lookup(K1) is None
    assert not art.parent.exists()
    assert any("corrupt" in line for line in lines)


def test_store_refuses_a_wrong_sha256_and_keeps_nothing(tmp_path: Path) -> None:
    cache = DepCache(tmp_path / "cache")
    art = make_artifact(tmp_path / "a.tar.gz")
    with pytest.raises(CacheError):
        cache.store(K1, art, {"name": "x", "sha256": "0" * 64})
    assert cache.lookup(K1) is None and cache.entries() == []


@pytest.mark.parametrize("key", ["../" + "1" * 61, "A" * 64, "1" * 63])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(CacheError):
        DepCache(tmp_path).lookup(key)


def test_store_over_an_existing_good_entry_keeps_it(tmp_path: Path) -> None:
    cache = DepCache(tmp_path / "cache")
    first = stored(cache, K1, tmp_path)
    before = first.read_bytes()
    cache.store(K1, make_artifact(tmp_path / "other.tar.gz", "other"), {"name": "libpng"})
    assert cache.lookup(K1) is not None and first.read_bytes() == before


# --- concurrency --------------------------------------------------------------------


def _build_or_hit(root: str, key: str, scratch: str, results: Queue[str]) -> None:
    cache = DepCache(Path(root))
    with cache.lock(key):
        if cache.lookup(key) is not None:
            results.put("hit")
            return
        time.sleep(0.5)  # a "build" long enough for the other process to be waiting
        art = make_artifact(Path(scratch) / f"{multiprocessing.current_process().pid}.tar.gz")
        cache.store(key, art, {"name": "zlib"})
        results.put("built")


def test_two_processes_one_build(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    results: Queue[str] = ctx.Queue()
    procs = [
        ctx.Process(target=_build_or_hit, args=(str(tmp_path / "c"), K1, str(tmp_path), results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted([results.get(timeout=5), results.get(timeout=5)]) == ["built", "hit"]


# --- export / import ----------------------------------------------------------------


@pytest.mark.parametrize("dest_name", ["exported", "cache.tar", "cache.tar.gz"])
def test_export_import_round_trip(tmp_path: Path, dest_name: str) -> None:
    src = DepCache(tmp_path / "src")
    stored(src, K1, tmp_path)
    stored(src, K2, tmp_path)
    dest = tmp_path / dest_name
    assert sorted(src.export(dest)) == [K1, K2]
    other = DepCache(tmp_path / "dst")
    result = other.import_(dest)
    assert sorted(result.imported) == [K1, K2] and result.rejected == []
    for k in (K1, K2):
        a, b = src.lookup(k), other.lookup(k)
        assert a is not None and b is not None and a.read_bytes() == b.read_bytes()
    again = other.import_(dest)
    assert again.imported == [] and sorted(again.present) == [K1, K2]


def test_export_selected_keys(tmp_path: Path) -> None:
    src = DepCache(tmp_path / "src")
    stored(src, K1, tmp_path)
    stored(src, K2, tmp_path)
    assert src.export(tmp_path / "one.tar.gz", keys=[K2]) == [K2]
    assert DepCache(tmp_path / "dst").import_(tmp_path / "one.tar.gz").imported == [K2]
    with pytest.raises(CacheError):
        src.export(tmp_path / "x.tar", keys=["3" * 64])
    assert not (tmp_path / "x.tar").exists()


def test_import_rejects_corrupted_entries(tmp_path: Path) -> None:
    src = DepCache(tmp_path / "src")
    stored(src, K1, tmp_path)
    stored(src, K2, tmp_path)
    exported = tmp_path / "exported"
    src.export(exported)
    bad = exported / "deps" / "22" / K2 / ARTIFACT
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: only the hash can tell
    bad.write_bytes(bytes(data))
    dst = DepCache(tmp_path / "dst")
    result = dst.import_(exported)
    assert result.imported == [K1]
    assert [k for k, _ in result.rejected] == [K2] and "sha256" in result.rejected[0][1]
    assert dst.lookup(K2) is None


def test_import_rejects_escaping_artifacts(tmp_path: Path) -> None:
    entry = tmp_path / "exp" / "deps" / "11" / K1
    entry.mkdir(parents=True)
    with tarfile.open(entry / ARTIFACT, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        tar.addfile(info, io.BytesIO(b""))
    art = entry / ARTIFACT
    meta = {
        "key": K1,
        "sha256": hashlib.sha256(art.read_bytes()).hexdigest(),
        "size": art.stat().st_size,
        "name": "evil",
    }
    (entry / META).write_text(json.dumps(meta))
    dst = DepCache(tmp_path / "dst")
    result = dst.import_(tmp_path / "exp")
    assert result.imported == [] and "escapes" in result.rejected[0][1]
    assert dst.entries() == []


def test_import_of_a_garbage_file_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    dst = DepCache(tmp_path / "dst")
    with pytest.raises(CacheError):
        dst.import_(tmp_path / "junk.tar.gz")
    assert dst.entries() == []


def test_clear_and_prune(tmp_path: Path) -> None:
    cache = DepCache(tmp_path / "c")
    stored(cache, K1, tmp_path)
    stored(cache, K2, tmp_path)
    assert cache.prune(older_than=3600) == []
    assert cache.prune(keep=[K1]) == [K2]
    assert cache.clear() == 1 and cache.entries() == []
