"""Shared fixtures. Integration tests (marked `docker`) drive the real engine and the local
images; when the engine is unreachable they fail (CI installs it: .ci/run), never skip
silently, unless ORCH_TEST_NO_DOCKER=1 asks for unit tests only."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.run import EXAMPLES, ROOT, containers_with_label, orch

__all__ = ["EXAMPLES", "ROOT", "containers_with_label", "orch"]


# Tests that start from an empty ORCH_CACHE_DIR still share one cross toolchain root (a
# toolchain, like an image, not a cache entry): built once, not once per test.
if not os.environ.get("ORCH_CROSS_DIR"):
    from orchestrator.emulation.cross_root import cross_dir

    os.environ["ORCH_CROSS_DIR"] = str(cross_dir())
# Likewise the compiled interpreters (images/interpreters.py): tests that need a fresh store
# say so with their own ORCH_INTERPRETER_DIR.
if not os.environ.get("ORCH_INTERPRETER_DIR"):
    from orchestrator.images.interpreters import store_dir

    os.environ["ORCH_INTERPRETER_DIR"] = str(store_dir())
# Passed checks are reused for an identical wheel (pipeline/checks.py), recorded in the
# orch cache, which many tests share (the user's): a test that asserts what verification
# printed or created must see it run, so the suite re-checks unless a test says otherwise
# (tests/test_checks_reuse.py sets ORCH_RECHECK=0 with its own cache).
os.environ.setdefault("ORCH_RECHECK", "1")
# `orch plan` asks the package mirror whether it serves each source-built interpreter's
# source (images/sources.py); tests ask only their own 127.0.0.1 mirror
# (tests/test_source_probe.py), never the machine's.
os.environ.setdefault("ORCH_SOURCE_PROBE", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("ORCH_TEST_NO_DOCKER") == "1":
        skip = pytest.mark.skip(reason="ORCH_TEST_NO_DOCKER=1: unit tests only")
        for item in items:
            if "docker" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _settings_follow_monkeypatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """orch resolves the environment once per process (orchestrator/options.py); in this
    process the tests change it, so it is resolved again after each change."""
    from orchestrator import options

    for name in ("setenv", "delenv"):
        original = getattr(monkeypatch, name)

        def changed(*args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(*args, **kwargs)
            options.reset_env()

        setattr(monkeypatch, name, changed)
    options.reset_env()
    yield
    monkeypatch.undo()
    options.reset_env()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    from orchestrator.container import engine

    engine.ping()  # raises a clear EnvironmentProblem if the engine is down


@pytest.fixture(scope="session")
def x86_images(docker_engine: None) -> tuple[str, str]:
    from orchestrator.images.local import ensure_local_image

    runtime = ensure_local_image("x86_64", "runtime")
    build = ensure_local_image("x86_64", "build")
    return build.ref, runtime.ref


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("ORCH_CACHE_DIR", str(d))
    return d


@pytest.fixture()
def definitions_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of images/ that the test may edit."""
    from orchestrator.images import definition

    copy = tmp_path / "images"
    shutil.copytree(definition.images_dir(), copy)
    monkeypatch.setattr(definition, "images_dir", lambda: copy)
    return copy / definition.DEFINITION_SUBDIR


@pytest.fixture()
def project_copy(tmp_path: Path) -> Iterator[Path]:
    dest = tmp_path / "hello-bz2"
    shutil.copytree(EXAMPLES / "hello-bz2", dest)
    yield dest


# Fixtures shared by several integration test modules.
from tests.support.depworld import world  # noqa: E402, F401
