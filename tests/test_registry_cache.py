"""Push/pull of cache entries through a real registry (Debian's ``docker-registry``)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import shutil
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from orchestrator.deps.cache import DepCache
from orchestrator.deps.registry import RegistryError, pull, push
from tests.support.registry import REGISTRY_BIN, Registry, start_registry
from tests.support.sourceserver import unused_port

KEY = "3f" * 32
USER, PASSWORD = "orch", "s3cret-pw"

pytestmark = pytest.mark.skipif(
    shutil.which(REGISTRY_BIN) is None,
    reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry",
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    yield from start_registry(tmp_path / "reg", None)


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd missing: apt-get install apache2-utils")
    (tmp_path / "reg").mkdir()
    htpasswd = tmp_path / "reg" / "htpasswd"
    line = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    htpasswd.write_text(line)
    yield from start_registry(tmp_path / "reg", htpasswd)


def _cache_with_entry(root: Path) -> tuple[DepCache, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"!<arch>\nfake static library\n"
        info = tarfile.TarInfo("lib/libz.a")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    art = root / "built.tar.gz"
    root.mkdir(parents=True, exist_ok=True)
    art.write_bytes(buf.getvalue())
    cache = DepCache(root / "cache")
    cache.store(KEY, art, {"name": "zlib", "version": "1.3.1", "build_seconds": 2.0})
    return cache, buf.getvalue()


def test_push_pull_round_trip(tmp_path: Path, registry: Registry) -> None:
    cache, payload = _cache_with_entry(tmp_path / "a")
    digest = push(cache, KEY, registry.url, "orch/deps")
    assert digest.startswith("sha256:")
    # Pushing again is harmless (blobs already there).
    assert push(cache, KEY, registry.url, "orch/deps") == digest

    other = DepCache(tmp_path / "b")
    got = pull(other, KEY, registry.url, "orch/deps")
    assert got is not None and got.read_bytes() == payload
    meta = json.loads((got.parent / "meta.json").read_text())
    assert meta["name"] == "zlib" and meta["key"] == KEY
    assert other.lookup(KEY) == got


def test_manifest_is_an_oci_artifact(tmp_path: Path, registry: Registry) -> None:
    cache, _ = _cache_with_entry(tmp_path / "a")
    push(cache, KEY, registry.url, "orch/deps")
    resp = requests.get(
        f"http://{registry.url}/v2/orch/deps/manifests/{KEY}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    doc = resp.json()
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["annotations"]["io.orch.dependency.name"] == "zlib"
    assert len(doc["layers"]) == 1


def test_missing_tag_and_repository_are_none(tmp_path: Path, registry: Registry) -> None:
    cache, _ = _cache_with_entry(tmp_path / "a")
    push(cache, KEY, registry.url, "orch/deps")
    empty = DepCache(tmp_path / "b")
    assert pull(empty, "0" * 64, registry.url, "orch/deps") is None
    assert pull(empty, KEY, registry.url, "orch/nothing-here") is None
    assert empty.entries() == []


def test_tampered_blob_is_rejected(tmp_path: Path, registry: Registry) -> None:
    cache, _ = _cache_with_entry(tmp_path / "a")
    push(cache, KEY, registry.url, "orch/deps")
    # Corrupt the layer's bytes in the registry's storage behind its back.
    entry = cache.lookup(KEY)
    assert entry is not None
    sha = json.loads((entry.parent / "meta.json").read_text())["sha256"]
    blob = next(registry.storage.rglob(f"blobs/sha256/{sha[:2]}/{sha}/data"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    other = DepCache(tmp_path / "b")
    with pytest.raises(RegistryError, match="verify"):
        pull(other, KEY, registry.url, "orch/deps")
    assert other.entries() == []
    assert list((other.deps / ".tmp").iterdir()) == []


def test_push_of_an_unknown_key_fails(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(RegistryError, match="not in the local cache"):
        push(DepCache(tmp_path), "4" * 64, registry.url, "orch/deps")


def test_unreachable_registry_is_a_clear_error(tmp_path: Path) -> None:
    cache, _ = _cache_with_entry(tmp_path / "a")
    with pytest.raises(RegistryError, match="unreachable"):
        push(cache, KEY, f"127.0.0.1:{unused_port()}", "orch/deps")


def test_basic_auth(
    tmp_path: Path, auth_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, payload = _cache_with_entry(tmp_path / "a")
    monkeypatch.delenv("ORCH_REGISTRY_USER", raising=False)
    with pytest.raises(RegistryError, match="ORCH_REGISTRY_USER"):
        push(cache, KEY, auth_registry.url, "orch/deps")
    with pytest.raises(RegistryError, match="rejected"):
        push(cache, KEY, auth_registry.url, "orch/deps", auth=(USER, "wrong"))

    monkeypatch.setenv("ORCH_REGISTRY_USER", USER)
    monkeypatch.setenv("ORCH_REGISTRY_PASSWORD", PASSWORD)
    push(cache, KEY, auth_registry.url, "orch/deps")
    other = DepCache(tmp_path / "b")
    got = pull(other, KEY, auth_registry.url, "orch/deps")
    assert got is not None and got.read_bytes() == payload
    assert pull(other, "0" * 64, auth_registry.url, "orch/deps") is None


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """Just enough of a token-auth registry: every /v2 call needs ``Bearer tok``."""

    seen_scopes: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            self.seen_scopes.extend(query.get("scope", []))
            ok = self.headers.get("Authorization") == _basic_header(USER, PASSWORD)
            self._reply(200 if ok else 401, b'{"token": "tok"}' if ok else b"{}")
        elif self.headers.get("Authorization") != "Bearer tok":
            port = self.headers.get("Host", "").rpartition(":")[2]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                'scope="repository:orch/deps:pull"',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bearer_token_flow(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"127.0.0.1:{server.server_address[1]}"
        cache = DepCache(tmp_path)
        assert pull(cache, KEY, url, "orch/deps", auth=(USER, PASSWORD)) is None
        assert _TokenRegistry.seen_scopes == ["repository:orch/deps:pull"]
        with pytest.raises(RegistryError, match="token service"):
            pull(cache, KEY, url, "orch/deps", auth=(USER, "wrong"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
