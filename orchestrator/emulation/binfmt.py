"""Can this host run containers of an architecture: natively, through a binfmt_misc
handler (QEMU), or not at all? Only handlers with the F flag work inside containers,
since the interpreter is opened at registration time, not looked up in the container."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator import archs
from orchestrator.errors import EnvironmentProblem

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
FIX = "run `orch setup-emulation` (as root; needs qemu-user-static) or `bash scripts/setup-host.sh`"


@dataclass(frozen=True)
class ArchSupport:
    arch: str
    mode: str  # native | emulated | missing | broken
    detail: str
    handler: str | None = None
    flags: str = ""


def support(arch: str, binfmt_dir: Path = BINFMT_DIR, host: str | None = None) -> ArchSupport:
    if archs.runs_natively(arch, host):
        return ArchSupport(arch, "native", "runs natively on this host")
    info = archs.get(arch)
    handler = binfmt_dir / f"qemu-{info.qemu}"
    if not binfmt_dir.is_dir() or not (binfmt_dir / "status").exists():
        return ArchSupport(arch, "missing", f"binfmt_misc is not mounted at {binfmt_dir}; {FIX}")
    if not handler.exists():
        return ArchSupport(arch, "missing", f"no binfmt handler {handler.name}; {FIX}")
    text = handler.read_text()
    enabled = text.splitlines()[0].strip() == "enabled" if text else False
    flags = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags:")), ""
    )
    interp = next(
        (ln.split(None, 1)[1].strip() for ln in text.splitlines() if ln.startswith("interpreter")),
        "",
    )
    if not enabled:
        return ArchSupport(arch, "broken", f"{handler.name} is disabled; {FIX}", interp, flags)
    if "F" not in flags:
        return ArchSupport(
            arch,
            "broken",
            f"{handler.name} lacks the F flag (containers fail with 'exec format error'); {FIX}",
            interp,
            flags,
        )
    return ArchSupport(arch, "emulated", f"QEMU via {interp} (flags {flags})", interp, flags)


def require(arch: str) -> ArchSupport:
    s = support(arch)
    if s.mode in ("missing", "broken"):
        raise EnvironmentProblem(f"cannot run {arch} containers on this host: {s.detail}")
    return s
