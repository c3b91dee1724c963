"""The run report: one JSON document every stage writes into (jobs, images, dependency
builds, timings, wheels, audit and verification results). Shards' reports merge into one."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.util.redact import redact_tree

REPORT_SCHEMA = 1


@dataclass
class WheelInfo:
    filename: str
    size: int
    sha256: str


@dataclass
class JobResult:
    id: str
    python: str
    platform_tag: str
    arch: str
    policy: str
    image: str
    emulated: bool
    status: str = "waiting"  # ok | failed | blocked | cancelled
    failed_stage: str | None = None
    error: str | None = None
    cause: str | None = None  # the one line that explains a failure (report/cause.py)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    wheel: WheelInfo | None = None
    log: str | None = None
    log_tail: list[str] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    verify: list[dict[str, Any]] = field(default_factory=list)
    image_id: str | None = None
    kept_container: str | None = None
    wheel_cache: dict[str, str] = field(default_factory=dict)  # build/verify -> hit | miss
    compile_cache: dict[str, int] = field(default_factory=dict)  # ccache hits/misses/uncacheable
    checks: dict[str, str] = field(default_factory=dict)  # status: run | reused (pipeline/checks)


@dataclass
class DepResult:
    name: str
    version: str
    group: str
    arch: str
    key: str
    status: str  # built | cached | failed | blocked
    seconds: float = 0.0
    log: str | None = None
    error: str | None = None
    cause: str | None = None  # the first error line of the failed build (report/cause.py)


@dataclass
class ImageResult:
    ref: str
    arch: str
    id: str | None
    source: str
    status: str  # present | built | pulled | missing
    seconds: float = 0.0


@dataclass
class RunReport:
    recipe: str
    name: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    host: dict[str, str] = field(
        default_factory=lambda: {"machine": platform.machine(), "node": platform.node()}
    )
    shard: str | None = None
    run_id: str = ""
    jobs: list[JobResult] = field(default_factory=list)
    deps: list[DepResult] = field(default_factory=list)
    images: list[ImageResult] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)

    def ok(self) -> bool:
        return all(j.status == "ok" for j in self.jobs)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = REPORT_SCHEMA
        data["orch_version"] = __version__
        return data

    def write(self, path: Path) -> None:
        write_json_atomic(path, redact_tree(self.to_json()))  # errors may quote URLs


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from CI uploaders
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
