"""A registry that answers badly, on 127.0.0.1: every request gets the same fault."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

MODES = ("garbage", "500", "slow", "drop", "stall")
SLOW_SECONDS = 2.0


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    mode = "garbage"
    requests = 0
    stop = threading.Event()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _fault(self) -> None:
        self.server.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 24))
        mode = self.server.mode
        if mode == "stall":  # accept, then never answer (until the test ends)
            self.server.stop.wait(300)
            return
        if mode == "drop":  # the connection dies before any answer
            self.close_connection = True
            return
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
        status, body = (500, b"internal error\n") if mode == "500" else (200, b"<html>nope</html>")
        if mode == "slow":
            status, body = 503, b'{"errors": [{"code": "UNAVAILABLE", "message": "slow"}]}'
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if status == 200 else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _fault

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def bad_registry(mode: str) -> Iterator[_Server]:
    """A server on 127.0.0.1 answering every request with `mode`; address in .server_address."""
    assert mode in MODES, mode
    server = _Server(("127.0.0.1", 0), _Handler)
    server.mode = mode
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
