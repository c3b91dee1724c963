"""Two runs sharing one cache at once; a cache entry corrupted on disk; hostile artifacts
(a chain of relative symlinks, an absolute link, a device, `..`) imported into the cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import Record, assert_clean
from tests.faults.engine import FaultEngine
from tests.faults.measure import RunOutcome, count_tracebacks, entry_problem, poisoned_entries
from tests.faults.scenario import Dep, make_build
from tests.support.run import ROOT
from tests.support.sourceserver import ServerURL


@pytest.mark.docker
@pytest.mark.slow
def test_concurrent_runs_then_corrupted_entry(
    engine: FaultEngine, tmp_path: Path, sources: tuple[Path, ServerURL], record: Record
) -> None:
    srv, base = sources
    cache = tmp_path / "cache"
    deps = [Dep("shareddep", sleep=3)]
    a = make_build(tmp_path / "a", engine, base, srv, deps, cache=cache)
    b = make_build(tmp_path / "b", engine, base, srv, deps, cache=cache)
    a.start("--no-verify", "--no-audit")
    b.start("--no-verify", "--no-audit")
    # Containers are counted once both are over: while b runs, its containers are not orphans.
    first, second = a.finish(timeout=600, count_orphans=False), b.finish(timeout=600)
    for outcome in (first, second):
        record("two concurrent runs, one cache", outcome)
    for outcome in (first, second):
        assert_clean(outcome)
        assert outcome.exit_code == 0, outcome.summary() + outcome.output[-3000:]
    entries = list((cache / "deps").glob("[0-9a-f][0-9a-f]/*/meta.json"))
    assert len(entries) == 1, entries

    # Corrupt the entry (same size, different bytes): the next run must not use it.
    artifact = entries[0].parent / "artifact.tar.gz"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    assert entry_problem(entries[0].parent) is not None  # the measure sees it
    c = make_build(tmp_path / "c", engine, base, srv, deps, cache=cache)
    third = c.run("--no-verify", "--no-audit")
    record("corrupted cache entry", third)
    assert_clean(third)
    assert third.exit_code == 0, third.summary() + third.output[-3000:]
    assert third.report is not None
    assert [d["status"] for d in third.report["deps"]] == ["built"]


# --- hostile artifacts (no engine needed) ------------------------------------------------

Member = Callable[[tarfile.TarFile], None]


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)

    return add


def _file(name: str, data: bytes = b"x") -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def _dir(name: str) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)

    return add


def _device(name: str) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null's numbers
        tar.addfile(info)

    return add


HOSTILE: dict[str, list[Member]] = {
    # a -> . ; a/b -> .. ; a/b/c -> .. ... : each link looks local, the chain climbs out.
    "symlink chain": [_dir("lib"), _link("lib/a", "."), _link("lib/a/b", ".."),
                      _link("lib/a/b/c", ".."), _link("lib/a/b/c/d", "../.."),
                      _file("lib/a/b/c/d/escaped.txt")],
    "absolute link": [_dir("lib"), _link("lib/libz.a", "/etc/passwd")],
    "device": [_dir("lib"), _device("lib/null")],
    "dot-dot member": [_dir("lib"), _file("lib/../../escaped.txt")],
    "hard link out": [_dir("lib"), _link("lib/h", "../../../etc/passwd", tarfile.LNKTYPE)],
}  # fmt: skip


def _artifact(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for add in members:
            add(tar)
    return gzip.compress(buf.getvalue(), mtime=0)


def _export(dest: Path, name: str, members: list[Member]) -> tuple[Path, str]:
    """An export tarball, in `orch cache export`'s layout, holding one hostile entry."""
    key = hashlib.sha256(name.encode()).hexdigest()
    artifact = _artifact(members)
    meta = {"key": key, "name": name.replace(" ", "-"), "version": "1.0",
            "sha256": hashlib.sha256(artifact).hexdigest(), "size": len(artifact),
            "created": 1_600_000_000.0, "format": 1, "build_seconds": 0.0}  # fmt: skip
    out = dest / f"{key[:12]}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for fname, data in (
            ("meta.json", json.dumps(meta).encode()),
            ("artifact.tar.gz", artifact),
        ):
            info = tarfile.TarInfo(f"deps/{key[:2]}/{key}/{fname}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out, key


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_artifact_import(kind: str, tmp_path: Path, record: Record) -> None:
    cache = tmp_path / "deep" / "er" / "cache"
    export, key = _export(tmp_path, kind, HOSTILE[kind])
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "cache", "import", str(export)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ORCH_CACHE_DIR": str(cache)},
    )
    output = done.stdout + done.stderr
    escaped = [p for p in tmp_path.rglob("escaped.txt")]
    outcome = RunOutcome(
        orphans=0,
        partial_wheels=[],
        poisoned=poisoned_entries(cache) + [f"file written outside: {p}" for p in escaped],
        report=None,
        tracebacks=count_tracebacks(output),
        exit_code=done.returncode,
        output=output,
    )
    record(f"hostile artifact: {kind}", outcome, report_expected=False)
    assert_clean(outcome, report=False)
    assert not (cache / "deps" / key[:2] / key).exists(), output
    assert done.returncode == 1 and "rejected" in output, output  # refused, and said so
