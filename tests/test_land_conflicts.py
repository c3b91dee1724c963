"""Two jobs of one run producing the same wheel file name (abi3, pure Python): identical
bytes land once and both jobs point at the file; different bytes fail the second job.
The sha256 a job reports is always that of the file in the wheelhouse."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.container.session import StageFailed
from orchestrator.pipeline.land import Landing, land_once
from orchestrator.util.hashing import sha256_file

NAME = "demo-1.0-cp39-abi3-manylinux_2_31_x86_64.whl"


def _wheel(staging: Path, data: bytes) -> Path:
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / NAME
    path.write_bytes(data)
    return path


def test_identical_wheels_land_once_and_both_jobs_point_at_it(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    landing = Landing(house)
    a = landing.land(_wheel(tmp_path / "s1", b"same"), "cp39-x")
    b = landing.land(_wheel(tmp_path / "s2", b"same"), "cp311-x")
    assert a == b
    assert [p.name for p in house.iterdir()] == [NAME]
    assert a.sha256 == sha256_file(house / NAME)
    assert not (tmp_path / "s2" / NAME).exists()


def test_a_different_wheel_with_the_same_name_fails_the_second_job(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    landing = Landing(house)
    first = landing.land(_wheel(tmp_path / "s1", b"first"), "cp39-x")
    with pytest.raises(StageFailed, match="cp39-x already landed a different wheel") as exc:
        landing.land(_wheel(tmp_path / "s2", b"second"), "cp311-x")
    assert exc.value.stage == "land"
    assert (house / NAME).read_bytes() == b"first"
    assert first.sha256 == sha256_file(house / NAME)


def test_concurrent_jobs_never_record_a_sha256_that_is_not_the_file(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    results: dict[int, str] = {}
    errors: list[int] = []

    def job(i: int) -> None:
        wheel = _wheel(tmp_path / f"s{i}", b"same" if i % 2 else f"other{i}".encode())
        try:
            results[i] = land_once(wheel, house, run_id="run-1", job=f"job{i}").sha256
        except StageFailed:
            errors.append(i)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    on_disk = sha256_file(house / NAME)
    assert set(results.values()) == {on_disk}
    assert len(results) + len(errors) == 8 and errors


def test_a_new_run_may_replace_an_old_runs_wheel(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    land_once(_wheel(tmp_path / "s1", b"old"), house, run_id="run-a", job="j")
    info = land_once(_wheel(tmp_path / "s2", b"new"), house, run_id="run-b", job="j")
    assert (house / NAME).read_bytes() == b"new" and info.sha256 == sha256_file(house / NAME)
