"""Local cache faults are misses or warnings, never a failed dependency: a full disk
(a real, tiny tmpfs) and an unreadable entry. Nothing half-written stays behind."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.deps.cache import CacheError, DepCache

KEY = "7c" * 32


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _artifact(path: Path, size: int) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = os.urandom(size)  # incompressible: it really takes the space
        info = tarfile.TarInfo("lib/libbig.a")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_a_full_cache_disk_is_a_warning_and_the_build_is_used_uncached(
    tmp_path: Path, tiny_fs: Path
) -> None:
    cache = DepCache(tiny_fs / "cache")
    built = _artifact(tmp_path / "built.tar.gz", 1 << 20)
    warnings: list[str] = []
    got = cache.store_or_keep(KEY, built, {"name": "big", "version": "1"}, warnings.append)
    assert got == built and built.is_file()  # the dependency still has its artifact
    assert len(warnings) == 1 and "could not cache" in warnings[0]
    assert cache.entries() == [] and cache.lookup(KEY) is None  # nothing poisoned
    tmp = cache.deps / ".tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []  # nothing half-written


def test_store_or_keep_refuses_an_unsafe_artifact(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("lib/evil")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info)
    with pytest.raises(CacheError, match="absolute"):
        DepCache(tmp_path / "c").store_or_keep(KEY, bad, {}, lambda _m: None)


def test_an_unreadable_cache_is_a_miss(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    (root / "deps").write_text("not a directory")  # every path below it fails with OSError
    warnings: list[str] = []
    cache = DepCache(root)
    assert cache.lookup_or_miss(KEY, warnings.append) is None
    built = _artifact(tmp_path / "b.tar.gz", 100)
    assert cache.store_or_keep(KEY, built, {}, warnings.append) == built
    assert "could not cache" in warnings[-1]
