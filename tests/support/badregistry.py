"""A misbehaving OCI registry on 127.0.0.1 for fault tests: it answers HTML instead of
JSON, 500s, drops connections, stalls, names a token realm on another host, or sends
uploads and blobs to another host. "Another host" is ``localhost``: the same server
under a second name, so every request still goes to 127.0.0.1 and is recorded."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MODES = (
    "html",  # 200 with an HTML page for everything
    "500",  # every call fails
    "drop",  # the connection closes without an answer
    "slow",  # answers after a long pause
    "realm-other-host",  # Bearer realm on another host
    "realm-plain-http",  # Bearer realm over http on the same host (allowed: loopback)
    "upload-other-host",  # Basic auth; upload Location on another host
    "blob-redirect-other-host",  # Basic auth; blob GET redirects to another host
)
USER, PASSWORD = "ci", "hunter2"


@dataclass
class Seen:
    method: str
    host: str  # the Host header: 127.0.0.1:port or localhost:port
    path: str
    authorization: str | None


@dataclass
class BadRegistry:
    port: int
    mode: str
    seen: list[Seen] = field(default_factory=list)
    delay: float = 5.0

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def other_host(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"

    def auth_seen_by_other_host(self) -> list[Seen]:
        return [s for s in self.seen if s.host.startswith("localhost") and s.authorization]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._dispatch()

    def _dispatch(self) -> None:
        reg = self.server.registry
        host = self.headers.get("Host", "")
        auth = self.headers.get("Authorization")
        reg.seen.append(Seen(self.command, host, self.path, auth))
        mode = reg.mode
        if mode == "html":
            return self._reply(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
        if mode == "500":
            return self._reply(500, b"internal error")
        if mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if mode == "slow":
            time.sleep(reg.delay)
            return self._reply(404, b"{}")
        if mode.startswith("realm-"):
            return self._bearer(mode, host, auth)
        return self._basic_then(mode, host, auth)

    def _bearer(self, mode: str, host: str, auth: str | None) -> None:
        port = self.server.registry.port
        if self.path.startswith("/token"):
            return self._reply(200, b'{"token": "tok-abc-123456"}', "application/json")
        if auth != "Bearer tok-abc-123456":
            realm_host = "localhost" if mode == "realm-other-host" else "127.0.0.1"
            return self._reply(
                401,
                b"{}",
                headers={"WWW-Authenticate": f'Bearer realm="http://{realm_host}:{port}/token"'},
            )
        return self._reply(404, b'{"errors": []}', "application/json")

    def _basic_then(self, mode: str, host: str, auth: str | None) -> None:
        reg = self.server.registry
        if host.startswith("localhost"):  # "the other host": wants credentials too
            if auth:
                return self._reply(201, b"")
            return self._reply(401, b"", headers={"WWW-Authenticate": 'Basic realm="other"'})
        if not auth:
            return self._reply(401, b"", headers={"WWW-Authenticate": 'Basic realm="reg"'})
        if mode == "upload-other-host":
            if self.command == "HEAD" or "/manifests/" in self.path:
                return self._reply(404, b"")
            if self.command == "POST":
                loc = reg.other_host("/upload/session-1")
                return self._reply(202, b"", headers={"Location": loc})
        if mode == "blob-redirect-other-host" and "/blobs/" in self.path:
            return self._reply(307, b"", headers={"Location": reg.other_host("/blob-store/x")})
        if mode == "blob-redirect-other-host" and "/manifests/" in self.path:
            return self._manifest()
        return self._reply(404, b"")

    def _manifest(self) -> None:
        body = self.server.manifest
        self._reply(200, body, "application/vnd.oci.image.manifest.v1+json")

    def _reply(
        self,
        code: int,
        body: bytes,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    registry: BadRegistry
    manifest: bytes = b""


@contextmanager
def bad_registry(mode: str, manifest: bytes = b"") -> Iterator[BadRegistry]:
    assert mode in MODES, mode
    server = _Server(("127.0.0.1", 0), _Handler)
    server.registry = BadRegistry(server.server_address[1], mode)
    server.manifest = manifest
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
