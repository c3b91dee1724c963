"""A private Docker engine for the fault suite.

The shared engine must never be stopped, and `orch clean` or an orphan count on it would
see other people's containers. So the suite runs orch against its own dockerd (own
socket, data root, exec root and bridge), which it may kill mid-run. Its data root is kept
between sessions so the local images are loaded once; the bridge and its NAT rule are
removed when the session ends.
"""

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

SOCKET = "/run/orch-fault-docker.sock"
HOST = f"unix://{SOCKET}"
DATA_ROOT = Path("/var/lib/orch-fault-docker")
EXEC_ROOT = Path("/run/orch-fault-docker-exec")
PIDFILE = Path("/run/orch-fault-docker.pid")
LOCK = Path("/run/orch-fault-docker.lock")
LOG = Path("/tmp/orch-fault-dockerd.log")
BRIDGE = "orchflt0"
SUBNET = "172.29.77.0/24"
GATEWAY = "172.29.77.1/24"
MANAGED = "io.orch.managed"

# iptables rules that let the private bridge reach the outside (pip in build containers),
# without letting this daemon rewrite the shared engine's chains (--iptables=false).
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
        ["docker", "-H", HOST, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class FaultEngine:
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def start(self) -> None:
        EXEC_ROOT.mkdir(parents=True, exist_ok=True)
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        with LOG.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    "--host", HOST,
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
        deadline = time.monotonic() + 60
        while not _answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private dockerd did not start: {LOG.read_text()[-2000:]}")
            time.sleep(0.3)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the daemon (SIGTERM: the engine going down, as `systemctl stop` does)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def orch_containers(self) -> list[str]:
        """Every container orch labelled on this engine, running or not."""
        return docker("ps", "-aq", "--filter", f"label={MANAGED}").split()

    def remove_all(self) -> None:
        ids = self.orch_containers()
        if ids:
            docker("rm", "-f", *ids, check=False)


def _answers() -> bool:
    probe = ["docker", "-H", HOST, "info", "--format", "{{.ID}}"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=False)


def _iptables(table: str, op: str, chain: str, rule: list[str]) -> bool:
    out = subprocess.run(["iptables", "-t", table, op, chain, *rule], capture_output=True)
    return out.returncode == 0


def _network_up() -> None:
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", GATEWAY, "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for table, chain, rule in _RULES:
        if not _iptables(table, "-C", chain, rule):
            _iptables(table, "-I" if chain == "FORWARD" else "-A", chain, rule)


def _network_down() -> None:
    for table, chain, rule in _RULES:
        while _iptables(table, "-D", chain, rule):
            pass
    _ip("link", "del", BRIDGE)


def _load_images(refs: tuple[str, ...]) -> None:
    """Copy the local images from the shared engine, unless already here with the same id."""
    missing = []
    for ref in refs:
        shared = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True
        ).stdout.strip()
        here = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False).strip()
        if shared != here:
            missing.append(ref)
    if not missing:
        return
    save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE)
    assert save.stdout is not None
    load = subprocess.Popen(
        ["docker", "-H", HOST, "load", "-q"], stdin=save.stdout, stderr=subprocess.PIPE
    )
    save.stdout.close()  # only `load` reads it: `save` sees a closed pipe if `load` dies
    _, err = load.communicate(timeout=900)
    save.wait(timeout=60)
    if load.returncode != 0 or save.returncode != 0:
        raise RuntimeError(f"loading images into the private engine: {err.decode()}")


def _stale_daemon() -> None:
    """A daemon left by an interrupted session holds the socket: stop it."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(PIDFILE.read_text().strip())
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"dockerd"):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.2)


@contextlib.contextmanager
def _session_lock() -> Iterator[None]:
    """One fault session at a time on this host: they share the socket and the bridge."""
    with LOCK.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def private_engine(images: tuple[str, ...]) -> Iterator[FaultEngine]:
    with _session_lock():
        yield from _private_engine(images)


def _private_engine(images: tuple[str, ...]) -> Iterator[FaultEngine]:
    _stale_daemon()  # under the lock: only a crashed session's daemon can be left
    _network_up()
    fe = FaultEngine()
    try:
        fe.start()
        _load_images(images)
        fe.remove_all()
        yield fe
    finally:
        if fe.proc is not None:
            fe.remove_all()
        fe.stop()
        _network_down()
