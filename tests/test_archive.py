"""Safe extraction (orchestrator/util/archive.py): hostile tarballs are refused before
anything is written, the prefix rewrite keeps names and hard links intact, copy-out is
bounded."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.deps.cache import CacheError, DepCache, check_artifact_tree
from orchestrator.errors import OrchError
from orchestrator.util import archive
from orchestrator.util.archive import UnsafeArchive

KEY = "ab" * 32


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


HOSTILE: dict[str, Callable[[], list[tuple[tarfile.TarInfo, bytes | None]]]] = {
    "dotdot": lambda: [_file("lib/../../etc/passwd")],
    "absolute name": lambda: [_file("/etc/passwd")],
    "absolute symlink": lambda: [_link("lib/evil", "/etc")],
    "relative symlink out": lambda: [_link("lib/evil", "../../etc")],
    # a -> . ; a/b -> .. : each hop looks harmless, the chain is not
    "symlink chain written through": lambda: [_link("a", "."), _link("a/b", "..")],
    "symlink chain resolving out": lambda: [
        _link("up", ".."),
        _link("lib/x", "../up"),
    ],
    "symlink loop": lambda: [_link("p", "q"), _link("q", "p/..")],
    "file through a symlink": lambda: [_link("lib", "."), _file("lib/x")],
    "hard link outside": lambda: [_link("lib/h", "../../etc/shadow", hard=True)],
    "hard link to a missing member": lambda: [_link("lib/h", "etc/shadow", hard=True)],
    "character device": lambda: [_special("dev/null", tarfile.CHRTYPE)],
    "block device": lambda: [_special("dev/sda", tarfile.BLKTYPE)],
    "fifo": lambda: [_special("pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tarballs_are_rejected(tmp_path: Path, case: str) -> None:
    bad = _tar(tmp_path / "bad.tar.gz", _file("lib/libok.a"), *HOSTILE[case]())
    with pytest.raises(UnsafeArchive):
        archive.check_tar(bad)
    assert check_artifact_tree(bad) is not None
    # extract writes nothing at all
    with pytest.raises(UnsafeArchive):
        archive.extract(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar.gz"]
    # the cache never stores it, whoever built it
    cache = DepCache(tmp_path / "cache")
    with pytest.raises(CacheError):
        cache.store(KEY, bad, {"name": "evil"})
    assert cache.entries() == [] and cache.lookup(KEY) is None
    with pytest.raises(UnsafeArchive):
        archive.merge([bad])


def test_safe_links_are_accepted_and_extracted(tmp_path: Path) -> None:
    good = _tar(
        tmp_path / "good.tar.gz",
        _file("lib/libz.a", b"archive"),
        _link("lib/libz-1.a", "libz.a"),
        _link("lib64", "lib"),
        _link("include/zlib/up", "../../lib"),
        _link("lib/libz-hard.a", "lib/libz.a", hard=True),
        _file(".hidden/x", b"hidden"),
    )
    archive.check_tar(good)
    archive.extract(good, tmp_path / "out")
    assert (tmp_path / "out/lib64/libz.a").read_bytes() == b"archive"
    assert (tmp_path / "out/lib/libz-hard.a").read_bytes() == b"archive"
    assert (tmp_path / "out/.hidden/x").read_bytes() == b"hidden"


def test_merge_strips_a_prefix_not_characters_and_keeps_hard_links(tmp_path: Path) -> None:
    first = _tar(
        tmp_path / "a.tar.gz",
        _file("./.hidden/x", b"h"),
        _file("./lib/liba.a", b"a"),
        _link("./lib/liba-copy.a", "./lib/liba.a", hard=True),
    )
    second = _tar(tmp_path / "b.tar.gz", _file("lib/liba.a", b"other"), _file("..x/y", b"dots"))
    merged = archive.merge([first, second], "deps")
    with tarfile.open(fileobj=io.BytesIO(merged)) as tar:
        names = tar.getnames()
        assert names == ["deps/.hidden/x", "deps/lib/liba.a", "deps/lib/liba-copy.a", "deps/..x/y"]
        assert tar.getmember("deps/lib/liba-copy.a").linkname == "deps/lib/liba.a"
        tar.extractall(tmp_path / "out", filter="data")
    assert (tmp_path / "out/deps/lib/liba-copy.a").read_bytes() == b"a"  # first one wins
    assert (tmp_path / "out/deps/.hidden/x").read_bytes() == b"h"


def test_member_name_removes_a_prefix() -> None:
    assert archive.member_name("./.hidden/x") == ".hidden/x"
    assert archive.member_name(".hidden/x") == ".hidden/x"
    assert archive.member_name("././lib/") == "lib"
    assert archive.member_name("./") == ""


def test_copy_bounded_stops_at_the_limit() -> None:
    out = io.BytesIO()
    assert archive.copy_bounded(iter([b"ab", b"cd"]), out, 4, "x") == 4
    with pytest.raises(OrchError, match="ORCH_MAX_COPYOUT_MB"):
        archive.copy_bounded(iter([b"abc", b"def"]), io.BytesIO(), 4, "/wheels in c1")


def test_max_copyout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(archive.MAX_COPYOUT_ENV, raising=False)
    assert archive.max_copyout_bytes() == 4096 << 20
    monkeypatch.setenv(archive.MAX_COPYOUT_ENV, "2")
    assert archive.max_copyout_bytes() == 2 << 20
    monkeypatch.setenv(archive.MAX_COPYOUT_ENV, "lots")
    with pytest.raises(OrchError, match="ORCH_MAX_COPYOUT_MB"):
        archive.max_copyout_bytes()
