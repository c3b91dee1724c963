"""What a fault leaves behind, measured from the outside (engine, files, output), never from
orch's own opinion of itself.

- orphan containers: containers labelled by orch still on the engine after the run;
- partial wheels: files in the wheelhouse that report.json does not list as an ok job's
  wheel with that sha256, and temp/partial files anywhere in the wheelhouse;
- poisoned cache entries: entries whose meta does not match their key or their artifact,
  artifacts holding members that escape on extraction, and temp leftovers;
- report written: report.json exists and parses;
- tracebacks: Python tracebacks in the console output.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

TRACEBACK = "Traceback (most recent call last)"
FILLER = ".filler"  # what the full-disk tests write to fill a filesystem: not orch's


@dataclass(frozen=True)
class RunOutcome:
    orphans: int
    partial_wheels: list[str]
    poisoned: list[str]
    report: dict[str, Any] | None
    tracebacks: int
    exit_code: int | None
    output: str

    def summary(self) -> str:
        return (
            f"exit {self.exit_code}, {self.orphans} orphan(s), partial {self.partial_wheels}, "
            f"poisoned {self.poisoned}, report {'yes' if self.report else 'NO'}, "
            f"{self.tracebacks} traceback(s)"
        )


@dataclass
class FaultRow:
    fault: str
    runs: int = 0
    orphans: int = 0
    partial_wheels: int = 0
    poisoned: int = 0
    reports: int = 0
    reports_expected: int = 0
    tracebacks: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, outcome: RunOutcome, *, report_expected: bool = True) -> None:
        self.runs += 1
        self.orphans += outcome.orphans
        self.partial_wheels += len(outcome.partial_wheels)
        self.poisoned += len(outcome.poisoned)
        self.reports += outcome.report is not None
        self.reports_expected += report_expected
        self.tracebacks += outcome.tracebacks


def read_report(wheelhouse: Path, report_file: Path | None = None) -> dict[str, Any] | None:
    path = report_file or wheelhouse / ".orch" / "report.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_temp(name: str) -> bool:
    return name.endswith((".tmp", ".part", ".partial"))


def partial_wheels(wheelhouse: Path, report: dict[str, Any] | None) -> list[str]:
    if not wheelhouse.is_dir():
        return []
    landed: dict[str, str] = {}
    bad = []
    for job in (report or {}).get("jobs", []):
        wheel = job.get("wheel")
        if job.get("status") != "ok" or not wheel:
            continue
        landed[wheel["filename"]] = wheel["sha256"]
        path = wheelhouse / wheel["filename"]
        if not path.is_file() or sha256(path) != wheel["sha256"]:
            bad.append(
                f"{wheel['filename']} (job {job['id']}: the report's sha256 is not the file's)"
            )
    for path in sorted(wheelhouse.rglob("*")):
        rel = path.relative_to(wheelhouse)
        if path.is_dir():
            if rel.parts[:2] == (".orch", "staging") and len(rel.parts) == 3:
                bad.append(f"{rel}/ (staging left)")
            continue
        if path.name == FILLER:
            continue
        if _is_temp(path.name):
            bad.append(str(rel))
        elif rel.parts[0] != ".orch" and landed.get(path.name) != sha256(path):
            bad.append(f"{rel} (not in the report with this sha256)")
    return bad


def poisoned_entries(cache_root: Path) -> list[str]:
    deps = cache_root / "deps"
    bad = []
    if not cache_root.is_dir():
        return bad
    for path in cache_root.rglob("*"):
        if _is_temp(path.name) and (path.is_file() or any(path.iterdir())):
            bad.append(f"{path.relative_to(cache_root)} (temp left)")
    for meta_file in sorted(deps.glob("[0-9a-f][0-9a-f]/*/meta.json")):
        problem = entry_problem(meta_file.parent)
        if problem:
            bad.append(f"{meta_file.parent.name[:12]}: {problem}")
    return bad


def entry_problem(entry: Path) -> str | None:
    """Why a cache entry must not be trusted, or None."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        return f"meta.json unreadable: {exc}"
    artifact = entry / "artifact.tar.gz"
    if not isinstance(meta, dict) or meta.get("key") != entry.name:
        return "meta.json names another key"
    if not artifact.is_file():
        return "no artifact"
    if meta.get("sha256") != sha256(artifact) or meta.get("size") != artifact.stat().st_size:
        return "artifact does not match meta.json"
    return unsafe_member(artifact)


def unsafe_member(artifact: Path) -> str | None:
    """The first member that would escape or misbehave on extraction (tarfile's `data`
    filter rules), checked by reading, never by extracting."""
    try:
        with tarfile.open(artifact) as tar:
            members = tar.getmembers()
    except (OSError, tarfile.TarError) as exc:
        return f"artifact unreadable: {exc}"
    links: dict[str, str] = {}
    for m in members:
        name = PurePosixPath(m.name)
        if name.is_absolute() or ".." in name.parts:
            return f"member {m.name!r} escapes"
        if m.ischr() or m.isblk() or m.isfifo():
            return f"member {m.name!r} is a device or fifo"
        if m.issym() or m.islnk():
            links[m.name] = m.linkname
            if PurePosixPath(m.linkname).is_absolute():
                return f"link {m.name!r} -> {m.linkname!r} is absolute"
    for name in links:
        if _escapes(name, links):
            return f"link {name!r} resolves outside the tree"
    return None


def _escapes(name: str, links: dict[str, str]) -> bool:
    """Resolve a link inside a virtual tree; True when any step climbs above the root."""
    todo = list(PurePosixPath(name).parts)
    stack: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        here = "/".join([*stack, part])
        if here in links and hops < 64:
            hops += 1
            todo = list(PurePosixPath(links[here]).parts) + todo
            continue
        stack.append(part)
    return False


def count_tracebacks(output: str) -> int:
    return output.count(TRACEBACK)
