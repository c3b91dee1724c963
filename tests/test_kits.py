"""The kits' shared once-per-machine logic (emulation/kits.py), with stand-in builders."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.emulation import cross_root, kits


def test_ensure_builds_once_and_ready_starts_one_background_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cross_root.ENV_CROSS_DIR, str(tmp_path))
    path = tmp_path / "kit-a"
    built: list[Path] = []
    release = threading.Event()

    def load(p: Path) -> str | None:
        return p.read_text() if p.is_file() else None

    def build(p: Path) -> str:
        release.wait(10)
        built.append(p)
        p.write_text("kit")
        return "kit"

    def ensure_now() -> str:
        return kits.ensure(path, load, build)

    assert kits.ready(path, load, ensure_now) is None  # starts the build
    assert kits.ready(path, load, ensure_now) is None  # one thread per path, not two
    release.set()
    kits._background[path].join(10)
    assert built == [path]
    assert kits.ready(path, load, ensure_now) == "kit"
    assert kits.ensure(path, load, build) == "kit" and built == [path]  # no second build
