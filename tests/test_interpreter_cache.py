"""Compiled interpreters as cache artifacts: kept in the orch cache, pushed to and pulled
from a real OCI registry (Debian's docker-registry on 127.0.0.1), and carried by `orch
cache export/import`, so a second machine fetches instead of compiling."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.deps import pythons
from orchestrator.deps.cache import DepCache
from tests.support.registry import REGISTRY_BIN, Registry, start_registry

KEY = "5e" * 32


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    yield from start_registry(tmp_path / "reg", None)


def _interpreter(path: Path) -> Path:
    """An interpreter tarball as build-cpython.sh packs one: /opt/python/<tag>/..."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        exe = b"#!/bin/sh\necho 3.11\n"
        info = tarfile.TarInfo("cp311-cp311/bin/python3.11")
        info.size, info.mode = len(exe), 0o755
        tar.addfile(info, io.BytesIO(exe))
        link = tarfile.TarInfo("cp311-cp311/bin/python")
        link.type, link.linkname = tarfile.SYMTYPE, "python3.11"
        tar.addfile(link)
    path.write_bytes(buf.getvalue())
    return path


RECORD = {"tag": "cp311-cp311", "arch": "x86_64", "source": {"version": "3.11.2-6"}, "seconds": 95}


def test_an_interpreter_goes_through_the_registry_to_another_machine(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_CACHE_REGISTRY", registry.url)
    tarball = _interpreter(tmp_path / "cp311.tar.gz")
    first = DepCache(tmp_path / "first")
    lines: list[str] = []
    pythons.share(first, KEY, tarball, RECORD, lines.append)
    assert first.lookup(KEY) is not None
    assert any(f"pushed python-cp311-cp311 3.11.2-6 ({KEY[:12]})" in line for line in lines), lines

    second = DepCache(tmp_path / "second")  # another machine: empty cache, same registry
    dest = tmp_path / "store" / "cp311-cp311-x.tar.gz"
    got: list[str] = []
    assert pythons.fetch(second, KEY, dest, got.append)
    assert dest.read_bytes() == tarball.read_bytes()
    assert f"[orch] interpreter {KEY[:12]} from the registry cache" in got
    meta = json.loads((second.entry_dir(KEY) / "meta.json").read_text())
    assert (meta["name"], meta["kind"]) == ("python-cp311-cp311", "interpreter")


def test_a_miss_everywhere_means_compile(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_CACHE_REGISTRY", registry.url)
    dest = tmp_path / "store" / "x.tar.gz"
    assert not pythons.fetch(DepCache(tmp_path / "c"), KEY, dest, lambda _l: None)
    assert not dest.exists()


def test_cache_export_and_import_carry_interpreters(tmp_path: Path) -> None:
    tarball = _interpreter(tmp_path / "cp311.tar.gz")
    first = DepCache(tmp_path / "first")
    pythons.share(first, KEY, tarball, RECORD, lambda _l: None)  # no registry configured
    first.export(tmp_path / "cache.tar.gz")
    other = DepCache(tmp_path / "other")
    assert other.import_(tmp_path / "cache.tar.gz").imported == [KEY]
    dest = tmp_path / "store" / "cp311.tar.gz"
    assert pythons.fetch(other, KEY, dest, lambda _l: None)
    assert dest.read_bytes() == tarball.read_bytes()
