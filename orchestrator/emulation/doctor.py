"""`orch doctor`: can this host run orch's jobs? Engine, emulation per architecture, disk,
local images; each problem with the command that fixes it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator import archs
from orchestrator.emulation import binfmt
from orchestrator.errors import EXIT_ENVIRONMENT, EXIT_OK, EnvironmentProblem


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Diagnosis:
    checks: list[Check] = field(default_factory=list)
    archs: list[binfmt.ArchSupport] = field(default_factory=list)

    def exit_code(self) -> int:
        return EXIT_OK if all(c.ok for c in self.checks) else EXIT_ENVIRONMENT

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": [asdict(c) for c in self.checks],
            "archs": [asdict(a) for a in self.archs],
        }


def diagnose() -> Diagnosis:
    d = Diagnosis()
    d.checks.append(_engine_check())
    d.archs = [binfmt.support(a) for a in archs.ARCHS]
    d.checks.append(_disk_check())
    d.checks.append(
        Check(
            "debootstrap",
            shutil.which("debootstrap") is not None,
            shutil.which("debootstrap") or "not installed (needed by `orch images build-local`)",
            "apt-get install -y debootstrap",
        )
    )
    if d.checks[0].ok:
        d.checks.append(_local_images_check())
    return d


def _engine_check() -> Check:
    from orchestrator.container import engine

    try:
        v = engine.engine_version()
    except EnvironmentProblem as exc:
        return Check("engine", False, str(exc).splitlines()[0], "bash scripts/setup-host.sh")
    return Check(
        "engine", True, f"Docker {v.get('Version')} (API {v.get('ApiVersion')}, {v.get('Arch')})"
    )


def _disk_check(path: Path = Path("/var/lib/docker")) -> Check:
    target = path if path.exists() else Path("/")
    free = shutil.disk_usage(target).free / 2**30
    return Check(
        "disk", free > 10, f"{free:.1f} GiB free at {target}", "free space (docker system prune)"
    )


def _local_images_check() -> Check:
    from orchestrator.container import engine
    from orchestrator.images.local import stale_local_images

    stale = set(stale_local_images())
    current = sorted({i.ref for i in engine.list_images("io.orch.image=local")} - stale)
    detail = (
        ", ".join(current)
        if current
        else "none built yet (`orch images build-local`; `orch build` builds them)"
    )
    if stale:
        detail += f"\n{len(stale)} stale (definition changed): `orch images prune` removes them"
    return Check("local images", True, detail)


def render(d: Diagnosis, console: Console) -> None:
    table = Table(title="orch doctor")
    table.add_column("check")
    table.add_column("")
    table.add_column("detail", overflow="fold")
    for c in d.checks:
        table.add_row(
            c.name,
            "[green]ok[/]" if c.ok else "[bold red]FAIL[/]",
            c.detail + (f"\n[dim]fix: {c.fix}[/]" if not c.ok and c.fix else ""),
        )
    for a in d.archs:
        mark = {"native": "[green]native[/]", "emulated": "[cyan]qemu[/]"}.get(
            a.mode, "[bold red]no[/]"
        )
        table.add_row(f"arch {a.arch}", mark, a.detail)
    console.print(table)


def setup_emulation(console: Console) -> int:
    """Register binfmt handlers from the host's qemu-user-static (F flag by default)."""
    binfmt_dir = binfmt.BINFMT_DIR
    if not (binfmt_dir / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)], check=False)
    tool = shutil.which("update-binfmts")
    if tool is None:
        raise EnvironmentProblem(
            "update-binfmts is missing: apt-get install -y qemu-user-static binfmt-support "
            "(or, where a registry is reachable: docker run --privileged --rm tonistiigi/binfmt --install all)"
        )
    subprocess.run([tool, "--enable"], check=False, capture_output=True)
    bad = [s for s in (binfmt.support(a) for a in archs.ARCHS) if s.mode in ("missing", "broken")]
    for s in bad:
        console.print(f"[red]{s.arch}[/]: {s.detail}")
    if not bad:
        console.print("every architecture runs (natively or through QEMU with the F flag)")
    return EXIT_ENVIRONMENT if bad else EXIT_OK
