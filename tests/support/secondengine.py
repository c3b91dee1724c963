"""A second Docker engine on this machine standing in for a remote build host
(tests/test_engines_e2e.py), after the approach of tests/faults/engine.py: its own socket,
data root, exec root and bridge, NAT for the bridge without letting it rewrite the shared
engine's chains (--iptables=false). The shared engine is never stopped or touched; this
one may be stopped mid-run. Its data root is kept between sessions (images copied once)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOCKET = "/run/orch-engines.sock"
URL = f"unix://{SOCKET}"
DATA_ROOT = Path("/var/lib/orch-engines-docker")
EXEC_ROOT = Path("/run/orch-engines-exec")
PIDFILE = Path("/run/orch-engines-docker.pid")
LOCK = Path("/run/orch-engines.lock")
LOG = Path("/tmp/orch-engines-dockerd.log")
BRIDGE = "orcheng0"
SUBNET = "172.29.66.0/24"
GATEWAY = "172.29.66.1/24"
MANAGED = "io.orch.managed"

_RULES = (
    ("filter", "FORWARD", ["-i", BRIDGE, "-j", "ACCEPT"]),
    (
        "filter",
        "FORWARD",
        ["-o", BRIDGE, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ),
    ("nat", "POSTROUTING", ["-s", SUBNET, "!", "-o", BRIDGE, "-j", "MASQUERADE"]),
)


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    out = subprocess.run(
        ["docker", "-H", URL, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class SecondEngine:
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        EXEC_ROOT.mkdir(parents=True, exist_ok=True)
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        with LOG.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    "--host", URL,
                    "--data-root", str(DATA_ROOT),
                    "--exec-root", str(EXEC_ROOT),
                    "--pidfile", str(PIDFILE),
                    "--bridge", BRIDGE,
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while not _answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"second dockerd did not start: {LOG.read_text()[-2000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop docker` on the remote host would."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def containers(self, label: str = MANAGED) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label={label}").split()

    def remove_all(self) -> None:
        ids = self.containers()
        if ids:
            docker("rm", "-f", *ids, check=False)


def _answers() -> bool:
    probe = ["docker", "-H", URL, "info", "--format", "{{.ID}}"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


def _iptables(table: str, op: str, chain: str, rule: list[str]) -> bool:
    out = subprocess.run(["iptables", "-t", table, op, chain, *rule], capture_output=True)
    return out.returncode == 0


def _network(up: bool) -> None:
    if up:
        for args in (
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", GATEWAY, "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            subprocess.run(["ip", *args], capture_output=True, check=False)
        for table, chain, rule in _RULES:
            if not _iptables(table, "-C", chain, rule):
                _iptables(table, "-I" if chain == "FORWARD" else "-A", chain, rule)
        return
    for table, chain, rule in _RULES:
        while _iptables(table, "-D", chain, rule):
            pass
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)


def _stale_daemon() -> None:
    """A daemon left by an interrupted session holds the socket: stop it."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(PIDFILE.read_text().strip())
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"dockerd"):
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.2)


@contextlib.contextmanager
def second_engine() -> Iterator[SecondEngine]:
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _stale_daemon()
        _network(up=True)
        engine = SecondEngine()
        try:
            engine.start()
            engine.remove_all()
            yield engine
        finally:
            if engine.proc is None:  # a test left it stopped: start it to clean up
                with contextlib.suppress(RuntimeError):
                    engine.start()
            with contextlib.suppress(Exception):
                engine.remove_all()
            engine.stop()
            _network(up=False)
            fcntl.flock(lock, fcntl.LOCK_UN)
