"""A private dockerd next to the shared engine, for what must never touch that one: the
fault suite (tests/faults), the second engine of tests/test_engines_e2e.py and the empty
engine of benchmarks/first_run.py. Each has its own socket, data root, exec root, pidfile,
log and bridge. The daemon never edits the host's chains (--iptables=false): the rules that
let its bridge reach the outside (pip, apt in build containers) are added and removed here.
Needs root.

It lives in scripts/ because a benchmark uses it as well as the tests, and benchmarks do not
import the test tree; not in orchestrator/, which has no business starting daemons or
editing the host's iptables.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MANAGED = "io.orch.managed"  # the label on every container orch starts


@dataclass(frozen=True)
class PrivateDockerd:
    socket: Path
    data_root: Path
    exec_root: Path
    pidfile: Path
    lock: Path  # one session at a time: they share the socket and the bridge
    log: Path
    bridge: str
    subnet: str  # the bridge's; its first address is the gateway
    start_seconds: float = 60

    @classmethod
    def named(
        cls,
        stem: str,
        bridge: str,
        subnet: str,
        data_root: Path | None = None,
        log: Path | None = None,
        start_seconds: float = 60,
    ) -> PrivateDockerd:
        """Files after `stem`: /run/<stem>.sock, .pid, .lock and -exec, /var/lib/<stem> and
        /tmp/<stem>.log unless given."""
        run = Path("/run")
        return cls(
            socket=run / f"{stem}.sock",
            data_root=data_root or Path("/var/lib") / stem,
            exec_root=run / f"{stem}-exec",
            pidfile=run / f"{stem}.pid",
            lock=run / f"{stem}.lock",
            log=log or Path("/tmp") / f"{stem}.log",
            bridge=bridge,
            subnet=subnet,
            start_seconds=start_seconds,
        )

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def gateway(self) -> str:
        net = ipaddress.ip_network(self.subnet)
        return f"{net.network_address + 1}/{net.prefixlen}"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """The docker CLI against this daemon; its stdout."""
        out = subprocess.run(
            ["docker", "-H", self.host, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def answers(self) -> bool:
        probe = ["docker", "-H", self.host, "info", "--format", "{{.ID}}"]
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

    def containers(self, label: str = MANAGED) -> list[str]:
        """Containers with `label`, running or not ("" for every one)."""
        filters = ["--filter", f"label={label}"] if label else []
        return self.docker("ps", "-aq", *filters).split()

    def remove_containers(self, label: str = MANAGED) -> None:
        ids = self.containers(label)
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def _rules(self) -> tuple[tuple[str, str, list[str]], ...]:
        back = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]
        return (
            ("filter", "FORWARD", ["-i", self.bridge, "-j", "ACCEPT"]),
            ("filter", "FORWARD", ["-o", self.bridge, *back]),
            ("nat", "POSTROUTING", ["-s", self.subnet, "!", "-o", self.bridge, "-j", "MASQUERADE"]),
        )

    def network_up(self) -> None:
        """The bridge (left as it is if there) and its NAT rules (each added once)."""
        _quiet(["ip", "link", "add", self.bridge, "type", "bridge"])
        _quiet(["ip", "addr", "add", self.gateway, "dev", self.bridge])
        _quiet(["ip", "link", "set", self.bridge, "up"])
        for table, chain, rule in self._rules():
            if _quiet(["iptables", "-t", table, "-C", chain, *rule]) != 0:
                op = "-I" if chain == "FORWARD" else "-A"  # ahead of the shared engine's drops
                _quiet(["iptables", "-t", table, op, chain, *rule])

    def network_down(self) -> None:
        for table, chain, rule in self._rules():
            while _quiet(["iptables", "-t", table, "-D", chain, *rule]) == 0:
                pass
        _quiet(["ip", "link", "del", self.bridge])

    def start(self) -> subprocess.Popen[bytes]:
        """Start the daemon and wait until it answers (the bridge must be up)."""
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                [
                    "dockerd",
                    "--host", self.host,
                    "--data-root", str(self.data_root),
                    "--exec-root", str(self.exec_root),
                    "--pidfile", str(self.pidfile),
                    "--bridge", self.bridge,
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.start_seconds
        while not self.answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)  # not left holding the socket
                raise RuntimeError(
                    f"dockerd on {self.socket} did not start: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.3)
        return proc

    def stop_stale(self) -> None:
        """A daemon left by an interrupted session holds the socket: stop it."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pidfile.read_text().strip())
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"dockerd"):
                os.kill(pid, signal.SIGTERM)
                for _ in range(150):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.2)

    def remove_exec_root(self) -> None:
        """After the daemon stopped: it leaves its network namespaces mounted there."""
        for ns in (self.exec_root / "netns").glob("*"):
            _quiet(["umount", str(ns)])
        shutil.rmtree(self.exec_root, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """SIGTERM: the engine going down, as `systemctl stop docker` does; killed if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@dataclass
class RunningDockerd:
    """A started PrivateDockerd that tests may stop and start again mid-run."""

    dockerd: PrivateDockerd
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self.dockerd.host

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def start(self) -> None:
        self.proc = self.dockerd.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop(self.proc, sig)
            self.proc = None

    def containers(self, label: str = MANAGED) -> list[str]:
        return self.dockerd.containers(label)

    def remove_all(self, label: str = MANAGED) -> None:
        self.dockerd.remove_containers(label)


@contextlib.contextmanager
def session(dockerd: PrivateDockerd, label: str = MANAGED) -> Iterator[RunningDockerd]:
    """The daemon up (under its lock), without containers labelled `label` ("": any) before
    and after; on the way out it is restarted if a test left it stopped (to remove them),
    then stopped and its bridge removed. The data root stays: the caller keeps or removes
    it."""
    with dockerd.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield from _session(dockerd, label)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _session(dockerd: PrivateDockerd, label: str) -> Iterator[RunningDockerd]:
    dockerd.stop_stale()  # under the lock, only a crashed session's daemon can be left
    dockerd.network_up()
    engine = RunningDockerd(dockerd)
    started = False
    try:
        engine.start()
        started = True
        engine.remove_all(label)
        yield engine
    finally:
        if started and engine.proc is None:
            with contextlib.suppress(RuntimeError):
                engine.start()
        with contextlib.suppress(Exception):
            engine.remove_all(label)
        engine.stop()
        dockerd.network_down()


def _quiet(cmd: list[str]) -> int:
    return subprocess.run(cmd, capture_output=True, check=False).returncode
