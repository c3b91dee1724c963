"""The compile cache of project builds: ccache (the native kit, emulation/ccache_kit.py)
wrapped around whatever compiler the job uses, with one cache directory per
image x arch x compiler under the orch cache, mounted read-write into the job's build
container.

Concurrent jobs of the same image x arch x compiler (two Pythons) share the directory:
ccache is made for that (parallel `make -j` writers): results are written to temporary
files and renamed into place, and its counters and cleanup take lock files, all on the
one host file system the containers share. A hit must never come from another compiler:
the directory is per compiler, and ccache's `compiler_check` is a string naming the
image id, the architecture and the accelerator's root key (the cross gcc or the clang
wrappers), so even a copied directory cannot mix them.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.container.session import Session
from orchestrator.container.types import Mount, PathOverlay
from orchestrator.emulation.accel import Accel
from orchestrator.emulation.ccache_kit import PREFIX, CcacheKit
from orchestrator.util.paths import cache_dir

CCACHE_DIR = "/orch/ccache"  # the mounted cache directory in the container
LOG_FILE = "/tmp/orch-ccache.log"  # this job's own ccache log: its hits and misses
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_SIZE = "2G"  # per directory; ccache evicts the least recently used beyond it


@dataclass(frozen=True)
class CompileCache:
    """The compile cache of one job's build container."""

    kit: CcacheKit
    arch: str
    image_id: str
    compiler: str  # image-gcc | cross-<version>-<key> | llvm-<version>-<key>
    identity: str  # ccache's compiler_check string

    @property
    def host_dir(self) -> str:
        short = self.image_id.split(":", 1)[-1][:12]
        return str(cache_dir() / "ccache" / f"{short}-{self.arch}-{self.compiler}")

    def mounts(self) -> tuple[Mount, ...]:
        return (
            Mount(str(self.kit.path), PREFIX, read_only=True),
            Mount(self.host_dir, CCACHE_DIR, read_only=False),
        )

    def overlay(self, accel: Accel | None, image_path: str) -> PathOverlay:
        """The ccache wrappers first on PATH (before the accelerator's), and ccache's
        settings; CCACHE_PATH is the PATH it searches for the real compiler."""
        real_path = f"{accel.wrapper_dir}:{image_path}" if accel else image_path
        first = f"{self.kit.bin_dir(self.arch)}:{accel.wrapper_dir}" if accel else ""
        defaults = {
            **(accel.overlay.defaults if accel else {}),
            **self.env(real_path),
        }
        return PathOverlay(first or self.kit.bin_dir(self.arch), defaults, image_path)

    def env(self, real_path: str) -> dict[str, str]:
        return {
            "CCACHE_DIR": CCACHE_DIR,
            "CCACHE_PATH": real_path,
            "CCACHE_COMPILERCHECK": f"string:{self.identity}",
            "CCACHE_LOGFILE": LOG_FILE,
            "CCACHE_MAXSIZE": MAX_SIZE,
            # put_tar gives every copied file a new ctime; a content change still misses
            "CCACHE_SLOPPINESS": "include_file_ctime",
            "CCACHE_NOHASHDIR": "1",  # the build directory is always /orch/src
        }


def compile_cache_for(
    kit: CcacheKit, arch: str, image_id: str, accel: Accel | None, emulated: bool
) -> CompileCache:
    if accel is not None:
        compiler = accel.cache_tag
        what = f"{accel.compiler}:{accel.key}"
    else:
        compiler = "qemu-gcc" if emulated else "image-gcc"
        what = compiler
    doc = f"{image_id}|{arch}|{what}|ccache {kit.version}"
    identity = hashlib.sha256(doc.encode()).hexdigest()[:32]
    return CompileCache(kit, arch, image_id, compiler, identity)


@dataclass(frozen=True)
class CompileStats:
    hits: int = 0
    misses: int = 0
    uncacheable: int = 0  # links, configure probes and other calls ccache passes through

    def to_json(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "uncacheable": self.uncacheable}

    def line(self) -> str:
        return (
            f"[ccache] {self.hits} hit(s), {self.misses} miss(es), "
            f"{self.uncacheable} call(s) not cacheable"
        )


_RESULT = re.compile(r"Result: (.+)$")


def parse_log(text: str) -> CompileStats:
    """The job's hits and misses from ccache's log ("Result: ..." once per call)."""
    hits = misses = other = 0
    for line in text.splitlines():
        match = _RESULT.search(line)
        if not match:
            continue
        result = match.group(1).strip().lower()
        if "hit" in result:
            hits += 1
        elif "miss" in result:
            misses += 1
        else:
            other += 1
    return CompileStats(hits, misses, other)


def read_stats(session: Session) -> CompileStats:
    """This job's counts (its own log file: the shared directory's counters mix jobs)."""
    try:
        data = session.get(LOG_FILE)
    except Exception:  # no compile ran: ccache never wrote its log
        return CompileStats()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                return parse_log(extracted.read().decode(errors="replace"))
    return CompileStats()


def stats_of(report: Mapping[str, int] | None) -> CompileStats:
    report = report or {}
    return CompileStats(
        report.get("hits", 0), report.get("misses", 0), report.get("uncacheable", 0)
    )
