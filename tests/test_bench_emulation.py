"""benchmarks/emulation.py's run order (no Docker): natives first, then every accelerated
run, then plain QEMU in the order --plain-archs gives, so a run cut short keeps the
accelerated figures and the plain ones asked for first."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator.emulation.accel import Fallback
from tests.test_accel import _fake_accel

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "emulation.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_emulation", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_run_order_natives_accelerated_then_plain_in_the_order_asked() -> None:
    bench = _bench()
    fast, none = _fake_accel(), Fallback("no cross toolchain")
    plans = {
        "aarch64": {"gcc-cross": fast, "llvm": fast},
        "s390x": {"gcc-cross": none, "llvm": fast},
    }
    runs = bench.run_list(["aarch64", "s390x"], ["s390x", "aarch64"], plans)
    assert runs == [
        ("x86_64", "native", "bookworm"),
        ("x86_64", "native", "bullseye"),
        ("aarch64", "gcc-cross", "bullseye"),
        ("aarch64", "llvm", "bullseye"),
        ("s390x", "llvm", "bookworm"),
        ("s390x", "plain", "bookworm"),
        ("aarch64", "plain", "bullseye"),
    ]
    # plain only for what was asked, never for an architecture not measured
    assert bench.run_list(["aarch64"], ["s390x"], plans)[-1] == ("aarch64", "llvm", "bullseye")


def test_rounds_repeat_natives_and_accelerated_then_plain_once() -> None:
    bench = _bench()
    runs = [
        ("x86_64", "native", "bullseye"),
        ("armv7l", "gcc-cross", "bullseye"),
        ("armv7l", "llvm", "bullseye"),
        ("armv7l", "plain", "bullseye"),
    ]
    assert bench.with_rounds(runs, 2) == [
        ("x86_64", "native", "bullseye", 1),
        ("armv7l", "gcc-cross", "bullseye", 1),
        ("armv7l", "llvm", "bullseye", 1),
        ("x86_64", "native", "bullseye", 2),
        ("armv7l", "gcc-cross", "bullseye", 2),
        ("armv7l", "llvm", "bullseye", 2),
        ("armv7l", "plain", "bullseye", 2),
    ]
    assert bench.with_rounds(runs, 1) == [(*r, 1) for r in runs]


def _run(bench: ModuleType, arch: str, mode: str, seconds: float, n: int, ok: bool = True) -> Any:
    return bench.Run(
        f"{arch} {mode}", arch, mode, "bullseye", seconds, ok, "w.whl", "", 0.0, {}, 1.0, {}, n
    )


def test_each_ratio_is_against_its_own_rounds_native_and_the_median_is_reported() -> None:
    bench = _bench()
    runs = [
        _run(bench, "x86_64", "native", 50.0, 1),
        _run(bench, "armv7l", "llvm", 100.0, 1),  # 2.0x
        _run(bench, "x86_64", "native", 100.0, 2),  # the host got busier
        _run(bench, "armv7l", "llvm", 130.0, 2),  # 1.3x: not 2.6x against round 1's native
        _run(bench, "x86_64", "native", 80.0, 3),
        _run(bench, "armv7l", "llvm", 120.0, 3),  # 1.5x
        _run(bench, "armv7l", "gcc-cross", 10.0, 3, ok=False),  # failed: no ratio
    ]
    by_round = bench.ratios_by_round(runs)
    assert by_round == {"armv7l": {"llvm": [2.0, 1.3, 1.5]}}
    assert bench.median(by_round["armv7l"]["llvm"]) == 1.5
    assert bench.median([1.2, 1.4]) == 1.3


def test_cpu_ratios_use_the_cpu_field(tmp_path: Path) -> None:
    bench = _bench()
    native, llvm = _run(bench, "x86_64", "native", 50.0, 1), _run(bench, "armv7l", "llvm", 90.0, 1)
    native.cpu, llvm.cpu = 80.0, 100.0
    assert bench.ratios_by_round([native, llvm], "cpu") == {"armv7l": {"llvm": [1.25]}}


def test_container_cpu_is_read_from_cgroup_v1_or_v2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench()
    v1, v2 = tmp_path / "v1-{id}", tmp_path / "v2-{id}"
    monkeypatch.setattr(bench, "CGROUP_CPU", ((str(v1), 1e-9), (str(v2), 1e-6)))
    assert bench.cgroup_cpu_seconds("abc") is None
    (tmp_path / "v2-abc").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert bench.cgroup_cpu_seconds("abc") == 2.5
    (tmp_path / "v1-abc").write_text("1500000000\n")  # nanoseconds, found first
    assert bench.cgroup_cpu_seconds("abc") == 1.5


def test_network_retries_are_counted_in_the_runs_logs(tmp_path: Path) -> None:
    bench = _bench()
    assert bench.network_retries(tmp_path) == 0
    retry = "WARNING: Retrying (Retry(total=4, connect=None)) after connection broken by ...\n"
    (tmp_path / "job-prefill.log").write_text("Collecting uv\n" + retry * 2)
    (tmp_path / "job.log").write_text(retry)
    (tmp_path / "notes.txt").write_text(retry)  # not a log
    assert bench.network_retries(tmp_path) == 3


def test_the_prefills_longest_command_is_recorded(tmp_path: Path) -> None:
    bench = _bench()
    assert bench.prefill_seconds(tmp_path) == 0.0
    (tmp_path / "cp39-x-prefill.log").write_text(
        "$ mkdir -p /orch/wheels\n[time] 0.4 s\n$ python fill.py prefetch\n[time] 207.6 s\n"
    )
    (tmp_path / "cp39-x.log").write_text("[time] 999.0 s\n")  # the job's own log: not counted
    assert bench.prefill_seconds(tmp_path) == 207.6
