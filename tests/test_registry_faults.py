"""A registry that answers badly is a cache miss with a warning, never a failed
dependency; credentials go only where they belong; tags are never overwritten.

The misbehaving registry (tests/support/badregistry.py) and the real one
(Debian's docker-registry) both listen on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.deps import registry
from orchestrator.deps.cache import DepCache
from orchestrator.deps.registry import RegistryClient, RegistryError
from orchestrator.util.hashing import sha256_file
from tests.support.badregistry import PASSWORD, USER, BadRegistry, bad_registry
from tests.support.registry import REGISTRY_BIN, Registry, start_registry

KEY = "5e" * 32


def _artifact(path: Path, payload: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("lib/libz.a")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def _cache_with_entry(root: Path, payload: bytes = b"!<arch>\nlib\n") -> DepCache:
    root.mkdir(parents=True, exist_ok=True)
    cache = DepCache(root / "cache")
    cache.store(KEY, _artifact(root / "a.tar.gz", payload), {"name": "zlib", "version": "1"})
    return cache


def _untouched(cache: DepCache) -> bool:
    """No entry and no leftover temp file: nothing poisoned, nothing half-written."""
    tmp = cache.deps / ".tmp"
    return cache.entries() == [] and (not tmp.exists() or not any(tmp.iterdir()))


@pytest.fixture
def warnings() -> list[str]:
    return []


@pytest.fixture
def use_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "TIMEOUT", (2.0, 1.0))  # "slow" must not take minutes
    monkeypatch.setattr(registry, "_unreachable", set())
    monkeypatch.setenv(registry.ENV_USER, USER)
    monkeypatch.setenv(registry.ENV_PASSWORD, PASSWORD)
    monkeypatch.delenv(registry.REPOSITORY_ENV, raising=False)
    monkeypatch.delenv(registry.ENV_AUTH_HOST, raising=False)
    yield


def _point_at(monkeypatch: pytest.MonkeyPatch, reg: BadRegistry) -> None:
    monkeypatch.setenv(registry.REGISTRY_ENV, reg.url)


@pytest.mark.parametrize("mode", ["html", "500", "drop", "slow"])
def test_a_bad_registry_is_a_miss_on_pull_and_a_warning_on_push(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_registry: None,
    warnings: list[str],
    mode: str,
) -> None:
    with bad_registry(mode) as reg:
        reg.delay = 3.0
        _point_at(monkeypatch, reg)
        empty = DepCache(tmp_path / "empty")
        assert registry.pull_or_miss(empty, KEY, "demo", warnings.append) is None
        assert _untouched(empty)
        full = _cache_with_entry(tmp_path / "full")
        registry.push_or_warn(full, KEY, "demo", warnings.append)  # must not raise
        assert full.lookup(KEY) is not None  # the local entry is untouched
        assert reg.seen, "the registry was never asked"
    assert len(warnings) == 2, warnings
    assert "treating" in warnings[0] and "as a miss" in warnings[0]
    if mode in ("drop", "slow"):  # no answer at all: not asked again in this run
        assert "skipping the registry cache" in warnings[1] and len(reg.seen) == 1
    else:
        assert "could not push" in warnings[1]
    assert all("hunter2" not in w for w in warnings)


def test_a_stalled_registry_costs_one_timeout_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_registry: None, warnings: list[str]
) -> None:
    with bad_registry("slow") as reg:
        reg.delay = 3.0
        _point_at(monkeypatch, reg)
        started = time.monotonic()
        for i in range(5):
            assert (
                registry.pull_or_miss(DepCache(tmp_path / str(i)), KEY, "d", warnings.append)
                is None
            )
        elapsed = time.monotonic() - started
    assert len(reg.seen) == 1 and elapsed < 2.5  # one 1 s read timeout, not five
    assert all("skipping" in w for w in warnings[1:]) and len(warnings) == 5


def test_token_realm_on_another_host_gets_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_registry: None, warnings: list[str]
) -> None:
    with bad_registry("realm-other-host") as reg:
        _point_at(monkeypatch, reg)
        assert registry.pull_or_miss(DepCache(tmp_path), KEY, "demo", warnings.append) is None
        assert [s for s in reg.seen if s.path.startswith("/token")] == []
        assert "another host" in warnings[0] and "ORCH_CACHE_AUTH_HOST" in warnings[0]
        # Configured explicitly, the other host is trusted: a normal miss, no warning.
        monkeypatch.setenv(registry.ENV_AUTH_HOST, "localhost")
        warnings.clear()
        assert registry.pull_or_miss(DepCache(tmp_path), KEY, "demo", warnings.append) is None
        assert warnings == []
        assert [s.host.split(":")[0] for s in reg.seen if s.path.startswith("/token")] == [
            "localhost"
        ]


def test_plain_http_realm_is_allowed_only_for_a_plain_loopback_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_registry: None, warnings: list[str]
) -> None:
    with bad_registry("realm-plain-http") as reg:
        _point_at(monkeypatch, reg)
        assert registry.pull_or_miss(DepCache(tmp_path), KEY, "demo", warnings.append) is None
        assert warnings == []  # a plain miss
        assert any(s.authorization == "Bearer tok-abc-123456" for s in reg.seen)
    # The same realm rules, checked without any network: https registry on a real host.
    client = RegistryClient("https://registry.test", "orch/deps/demo")
    client._check_realm("https://registry.test/token")
    for realm in ("http://registry.test/token", "https://evil.test/token", "ftp://registry.test/t"):
        with pytest.raises(RegistryError, match="refusing to send credentials"):
            client._check_realm(realm)
    plain = RegistryClient("http://10.0.0.1:5000", "orch/deps/demo")
    with pytest.raises(RegistryError, match="https is required"):
        plain._check_realm("http://10.0.0.1:5000/token")


def test_upload_location_on_another_host_gets_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_registry: None, warnings: list[str]
) -> None:
    with bad_registry("upload-other-host") as reg:
        _point_at(monkeypatch, reg)
        cache = _cache_with_entry(tmp_path)
        registry.push_or_warn(cache, KEY, "demo", warnings.append)
        assert any(s.host.startswith("localhost") for s in reg.seen), "upload never tried"
        assert reg.auth_seen_by_other_host() == []
        assert any(s.authorization for s in reg.seen)  # the registry itself did get them
    assert "could not push" in warnings[0] and "not sending them" in warnings[0]


def test_blob_redirect_to_another_host_gets_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_registry: None, warnings: list[str]
) -> None:
    meta = {"key": KEY, "sha256": "0" * 64, "size": 10}
    manifest = registry._manifest(
        meta,
        {"digest": "sha256:" + "1" * 64, "size": 10},
        {"digest": "sha256:" + "0" * 64, "size": 10},
    )
    with bad_registry("blob-redirect-other-host", manifest) as reg:
        _point_at(monkeypatch, reg)
        cache = DepCache(tmp_path)
        assert registry.pull_or_miss(cache, KEY, "demo", warnings.append) is None
        assert any(s.path == "/blob-store/x" for s in reg.seen), "redirect never followed"
        assert reg.auth_seen_by_other_host() == []
        assert _untouched(cache)
    assert "as a miss" in warnings[0]


def test_same_host_ignores_userinfo_and_default_ports() -> None:
    client = RegistryClient("https://ci:hunter2@registry.test", "orch/deps/demo")
    assert client._same_host("https://registry.test:443/v2/x")
    assert client._same_host("https://REGISTRY.test/v2/uploads/1?_state=a")
    assert not client._same_host("http://registry.test/v2/x")
    assert not client._same_host("https://registry.test:8443/v2/x")
    assert not client._same_host("https://registry.test.evil.test/v2/x")


def test_default_repository_is_per_project(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.default_repository("My Project_x") == "orch/deps/my-project-x"
    assert registry.default_repository("demo") != registry.default_repository("other")
    assert registry.default_repository("???") == "orch/deps/project"


# --- never overwrite a tag (real registry) -------------------------------------------


@pytest.fixture
def real_registry(tmp_path: Path) -> Iterator[Registry]:
    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    yield from start_registry(tmp_path / "reg", None)


def test_push_never_overwrites_a_tag(tmp_path: Path, real_registry: Registry) -> None:
    logs: list[str] = []
    first = _cache_with_entry(tmp_path / "a", b"first build")
    digest = registry.push(first, KEY, real_registry.url, "orch/deps/demo", log=logs.append)
    # The same artifact again (another machine, another meta.json): nothing is pushed.
    again = DepCache(tmp_path / "a2" / "cache")
    art = first.lookup(KEY)
    assert art is not None
    again.store(KEY, art, {"name": "zlib", "version": "1", "build_seconds": 99.0})
    assert registry.push(again, KEY, real_registry.url, "orch/deps/demo", log=logs.append) == digest
    assert "same artifact" in logs[-1]
    # A different artifact under the same key: a warning, and the remote one stays.
    other = _cache_with_entry(tmp_path / "b", b"a different build")
    assert registry.push(other, KEY, real_registry.url, "orch/deps/demo", log=logs.append) == digest
    assert "different artifact" in logs[-1] and "keeping the remote" in logs[-1]
    fresh = DepCache(tmp_path / "fresh")
    pulled = registry.pull(fresh, KEY, real_registry.url, "orch/deps/demo")
    assert pulled is not None
    with tarfile.open(pulled) as tar:
        member = tar.extractfile("lib/libz.a")
        assert member is not None and member.read() == b"first build"
    # Another project's repository is separate: nothing to pull there.
    assert (
        registry.pull(DepCache(tmp_path / "x"), KEY, real_registry.url, "orch/deps/other") is None
    )
    assert json.loads((pulled.parent / "meta.json").read_text())["key"] == KEY


def test_a_hostile_pulled_artifact_is_rejected(tmp_path: Path, real_registry: Registry) -> None:
    # Someone with push rights stored a symlink chain that leaves the prefix. Plant the
    # entry by hand (store() would refuse it) and push it as it is.
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, target in (("lib/a", "."), ("lib/a/b", "..")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    cache = DepCache(tmp_path / "pusher")
    entry = cache.entry_dir(KEY)
    entry.mkdir(parents=True)
    shutil.copyfile(evil, entry / "artifact.tar.gz")
    meta = {
        "key": KEY,
        "name": "evil",
        "version": "1",
        "sha256": sha256_file(evil),
        "size": evil.stat().st_size,
    }
    (entry / "meta.json").write_text(json.dumps(meta))
    registry.push(cache, KEY, real_registry.url, "orch/deps/demo")

    victim = DepCache(tmp_path / "victim")
    with pytest.raises(RegistryError, match="written through the symlink"):
        registry.pull(victim, KEY, real_registry.url, "orch/deps/demo")
    assert _untouched(victim)
