"""A full disk under the wheelhouse and under the cache (small tmpfs mounts, almost
filled, unmounted after): no partial wheel, no half-written cache entry, a report."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Record, assert_clean
from tests.faults.engine import FaultEngine
from tests.faults.measure import FILLER
from tests.faults.scenario import Dep, make_build
from tests.support.sourceserver import ServerURL

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@contextlib.contextmanager
def nearly_full(path: Path, size_kib: int, free_kib: int) -> Iterator[Path]:
    """A tmpfs of size_kib at path, filled until only free_kib remain."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], check=True
    )
    try:
        st = os.statvfs(path)
        fill = st.f_bavail * st.f_frsize - free_kib * 1024
        (path / FILLER).write_bytes(b"\0" * max(fill, 0))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_wheelhouse(engine: FaultEngine, tmp_path: Path, record: Record) -> None:
    out = tmp_path / "wheelhouse"
    build = make_build(tmp_path, engine, out=out)
    with nearly_full(out, size_kib=512, free_kib=24):  # the report fits, the wheel does not
        outcome = build.run("--no-audit")
        (out / FILLER).unlink()
    record("full disk: wheelhouse", outcome)
    assert_clean(outcome)
    assert outcome.exit_code == 1, outcome.summary()
    assert "No space left" in outcome.output or "no space" in outcome.output.lower()


def test_full_cache(
    engine: FaultEngine, tmp_path: Path, sources: tuple[Path, ServerURL], record: Record
) -> None:
    srv, base = sources
    cache = tmp_path / "cache"
    build = make_build(tmp_path, engine, base, srv, [Dep("bigdep", blob_kib=600)], cache=cache)
    with nearly_full(cache, size_kib=1024, free_kib=256):  # the source fits, the artifact not
        outcome = build.run("--no-verify", "--no-audit")
        leftovers = [p for p in cache.rglob("*") if p.name != FILLER]
        outcome_poisoned = outcome.poisoned
    record("full disk: cache", outcome)
    assert_clean(outcome)
    assert not outcome_poisoned
    assert outcome.exit_code == 0, outcome.summary() + outcome.output[-3000:]
    assert outcome.report is not None
    assert {d["status"] for d in outcome.report["deps"]} == {"built"}, leftovers
