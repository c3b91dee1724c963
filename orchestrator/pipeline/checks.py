"""Checks reused for an identical wheel: as a build system caches a passed test whose
inputs did not change. After repair, the wheel's content digest (member names, bytes and
modes; not the zip's timestamps) and everything the audit and the verification depend on
make the checks key; a record under `<cache>/checks/<key>.json` says those checks passed
once. Written atomically and only after the audit and every verification passed (a
failure is never recorded, so nothing is poisoned); `orch build --recheck` ignores it."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.plan.jobs import Job
from orchestrator.recipe.model import Recipe
from orchestrator.util.paths import cache_dir

RECORD_SCHEMA = 1
PACKAGE = Path(__file__).resolve().parents[1]  # orchestrator/
# host-side tools and libraries the audit's findings depend on
CHECK_TOOLS = ("auditwheel", "abi3audit", "pyelftools", "packaging")


def wheel_digest(wheel: Path) -> str:
    """sha256 over the wheel's members (name, mode, content), in name order: a rebuild
    that only changes the zip's timestamps or member order gives the same digest."""
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            mode = info.external_attr >> 16
            h.update(f"{info.filename}\0{mode:o}\0{info.file_size}\0".encode())
            h.update(hashlib.sha256(zf.read(info)).digest())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def orch_digest() -> str:
    """orch's own code (every file of the package but bytecode) and the checking tools'
    versions: a change to either runs the checks again."""
    h = hashlib.sha256(__version__.encode())
    for path in sorted(PACKAGE.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        h.update(f"\0{path.relative_to(PACKAGE)}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    for tool in CHECK_TOOLS:
        h.update(f"\0{tool}={_version(tool)}".encode())
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


@dataclass(frozen=True)
class ChecksKey:
    """What a passed audit and verification depend on."""

    wheel: str  # the file name (its tags decide where it is verified)
    digest: str  # wheel_digest
    job: Mapping[str, str]
    audit: Mapping[str, Any]  # the recipe's audit section, bundled and linked dependencies
    test: Mapping[str, Any]  # the recipe's whole test section
    images: tuple[tuple[str, str], ...]  # (verification image as named, its image id)
    options: Mapping[str, Any]  # run options that change the checks
    orch: str  # orch_digest()

    @property
    def key(self) -> str:
        doc = json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(doc.encode()).hexdigest()[:40]


def checks_key(
    wheel: Path,
    recipe: Recipe,
    job: Job,
    images: Iterable[tuple[str, str]],
    linked: Mapping[str, str],
    *,
    offline: bool,
    digest: str | None = None,
    installed: Iterable[str] = (),
    uv: str | None = None,
) -> ChecksKey:
    """`images`: the verification images as resolved for this wheel, each with its id;
    `linked`: the dependencies the job linked, each with its cache key; `installed`: what
    verification installs in each image (verify.installed_sets); `uv`: the native uv
    verification installs with (None: the image's own pip or uv)."""
    return ChecksKey(
        wheel=wheel.name,
        digest=digest or wheel_digest(wheel),
        job={
            "id": job.id,
            "python": job.python_tag,
            "platform": job.platform_tag,
            "policy": job.policy,
            "arch": job.arch,
        },
        audit={
            "section": dataclasses.asdict(recipe.audit),
            "bundled": sorted(d.name for d in recipe.dependencies),
            "linked": dict(sorted(linked.items())),
        },
        test=dataclasses.asdict(recipe.test),
        images=tuple(images),
        options={"offline": offline, "installed": list(installed), "uv": uv},
        orch=orch_digest(),
    )


@dataclass(frozen=True)
class ChecksRecord:
    """A passed audit and verification, as stored."""

    key: str
    written: float  # seconds since the epoch
    digest: str
    images: tuple[tuple[str, str], ...]
    audit: Mapping[str, Any]
    verify: tuple[Mapping[str, Any], ...]

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.written))

    def to_json(self) -> dict[str, Any]:
        return {"schema": RECORD_SCHEMA, **dataclasses.asdict(self)}


def records_dir(base: Path | None = None) -> Path:
    return (base or cache_dir()) / "checks"


def lookup(key: ChecksKey, base: Path | None = None) -> ChecksRecord | None:
    """The record for this key, or None (absent, unreadable, another schema or key)."""
    k = key.key
    try:
        doc = json.loads((records_dir(base) / f"{k}.json").read_text())
        if doc.get("schema") != RECORD_SCHEMA or doc.get("key") != k:
            return None
        return ChecksRecord(
            key=k,
            written=float(doc["written"]),
            digest=str(doc["digest"]),
            images=tuple((str(r), str(i)) for r, i in doc["images"]),
            audit=dict(doc["audit"]),
            verify=tuple(dict(v) for v in doc["verify"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(
    key: ChecksKey,
    audit: Mapping[str, Any],
    verify: Iterable[Mapping[str, Any]],
    base: Path | None = None,
) -> ChecksRecord:
    """Record passed checks (whole or not at all: a reader never sees half a record)."""
    record = ChecksRecord(key.key, time.time(), key.digest, key.images, audit, tuple(verify))
    folder = records_dir(base)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.key}.json"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps(record.to_json(), indent=1, default=list))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return record


def reused_line(record: ChecksRecord, path: Path | None = None) -> str:
    """The job log's one line for reused checks."""
    images = ", ".join(f"{ref} ({iid.split(':')[-1][:12]})" for ref, iid in record.images)
    return (
        f"[checks] reused: this wheel's content (sha256 {record.digest[:16]}…) passed the "
        f"audit and verification in {images or 'no image'} on {record.when} with the same "
        f"recipe, images and orch; not run again (record {path or record.key}); "
        "`orch build --recheck` (or ORCH_RECHECK=1) runs them"
    )
