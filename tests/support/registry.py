"""A real OCI registry (Debian's docker-registry) on 127.0.0.1 for tests, stopped after."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.sourceserver import unused_port

REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclass
class Registry:
    url: str  # host:port
    storage: Path


def registry_config(tmp: Path, port: int, htpasswd: Path | None) -> Path:
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: orch-test\n    path: {htpasswd}\n"
    cfg = tmp / "config.yml"
    cfg.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: orch-test-secret\n" + auth
    )
    return cfg


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"http://{url}/v2/", timeout=1).status_code in (200, 401):
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    pytest.fail(f"docker-registry did not answer on {url}")


def start_registry(tmp: Path, htpasswd: Path | None) -> Iterator[Registry]:
    tmp.mkdir(parents=True, exist_ok=True)
    port = unused_port()
    log = tmp / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(registry_config(tmp, port, htpasswd))],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(f"127.0.0.1:{port}", proc, log)
        yield Registry(f"127.0.0.1:{port}", tmp / "storage")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
