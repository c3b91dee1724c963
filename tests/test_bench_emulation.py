"""benchmarks/emulation.py's run order (no Docker): natives first, then every accelerated
run, then plain QEMU in the order --plain-archs gives, so a run cut short keeps the
accelerated figures and the plain ones asked for first."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
