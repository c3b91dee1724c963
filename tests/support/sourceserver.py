"""A throwaway HTTP server for generated source tarballs, and a tarball generator.

The network reaches no upstream host in tests, so every "download" is served from a
temp directory on 127.0.0.1. Containers started with ``--network host`` reach it too.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MTIME = 1_600_000_000  # fixed, so the same files give the same tarball and sha256


class ServerURL(str):
    """The base URL (no trailing slash); ``.hits`` lists the request paths served, in order."""

    hits: list[str]
    hit_lock: threading.Lock

    def __new__(cls, url: str) -> ServerURL:
        obj = super().__new__(cls, url)
        obj.hits = []
        obj.hit_lock = threading.Lock()
        return obj

    def record(self, path: str) -> None:
        with self.hit_lock:
            self.hits.append(path)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    base: ServerURL | None = None


class _Handler(http.server.SimpleHTTPRequestHandler):
    timeout = 30  # a stuck client cannot hold a thread forever
    server: _Server

    def send_head(self) -> Any:
        if self.server.base is not None:
            self.server.base.record(self.path)
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests assert on .hits instead


@contextlib.contextmanager
def serve_directory(path: Path, host: str = "127.0.0.1") -> Iterator[ServerURL]:
    """Serve ``path`` read-only over HTTP on a free port until the block ends."""
    server = _Server((host, 0), functools.partial(_Handler, directory=str(path)))
    server.base = base = ServerURL(f"http://{host}:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def unused_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (right now): connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def make_tarball(directory: Path, name: str, files: dict[str, str]) -> tuple[Path, str]:
    """Write ``<directory>/<name>.tar.gz`` holding ``<name>/<file>`` entries; (path, sha256).

    Deterministic (fixed mtimes, owners, gzip header). Files whose text starts with ``#!``
    are executable, so generated ``configure`` scripts run as-is.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for dirname in _parent_dirs(name, files):
            tar.addfile(_info(dirname, tarfile.DIRTYPE, 0o755, 0))
        for rel in sorted(files):
            data = files[rel].encode()
            mode = 0o755 if files[rel].startswith("#!") else 0o644
            info = _info(f"{name}/{rel}", tarfile.REGTYPE, mode, len(data))
            tar.addfile(info, io.BytesIO(data))
    out = directory / f"{name}.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    payload = gzip.compress(buf.getvalue(), mtime=0)
    out.write_bytes(payload)
    return out, hashlib.sha256(payload).hexdigest()


def _parent_dirs(name: str, files: dict[str, str]) -> list[str]:
    dirs = {name}
    for rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join([name, *parts[:i]]))
    return sorted(dirs)


def _info(arcname: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = MTIME
    info.uname = info.gname = "root"
    return info
