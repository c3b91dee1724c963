"""Getting wheels out of a container and into the wheelhouse atomically: streamed (with a
size bound) into a staging directory beside the wheelhouse (same filesystem), checked, then
renamed in. A failed or cancelled job leaves nothing in the wheelhouse.

Two jobs of one run may produce the same file name (abi3 or pure-Python wheels): the same
bytes land once and both jobs point at that file; different bytes fail the second job.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

from orchestrator.container.session import Session, StageFailed
from orchestrator.report.record import WheelInfo
from orchestrator.util.archive import max_copyout_bytes
from orchestrator.util.hashing import sha256_file


def copy_out_wheels(session: Session, path: str, staging: Path) -> list[Path]:
    """The regular *.whl files under ``path`` in the container, streamed to ``staging``."""
    staging.mkdir(parents=True, exist_ok=True)
    engine_tar = staging / ".copy-out.tar"
    try:
        session.copy_out(path, engine_tar, max_copyout_bytes())
        return extract_wheels(engine_tar, staging)
    finally:
        engine_tar.unlink(missing_ok=True)


def extract_wheels(tar_source: bytes | Path, staging: Path) -> list[Path]:
    """Extract only regular *.whl members (flattened) from an engine tar."""
    staging.mkdir(parents=True, exist_ok=True)
    out = []
    data = io.BytesIO(tar_source) if isinstance(tar_source, bytes) else None
    with tarfile.open(fileobj=data) if data else tarfile.open(tar_source) as tar:
        for member in tar:
            name = Path(member.name).name
            if not member.isfile() or not name.endswith(".whl") or name.startswith("."):
                continue
            src = tar.extractfile(member)
            assert src is not None
            dest = staging / name
            with dest.open("wb") as f:
                shutil.copyfileobj(src, f)
            out.append(dest)
    return out


def wheel_info(path: Path) -> WheelInfo:
    return WheelInfo(filename=path.name, size=path.stat().st_size, sha256=sha256_file(path))


def land(wheel: Path, wheelhouse: Path) -> Path:
    """Move a checked wheel into the wheelhouse in one rename."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    dest = wheelhouse / wheel.name
    os.replace(wheel, dest)
    return dest


@dataclass(frozen=True)
class _Claim:
    sha256: str
    job: str


class Landing:
    """Which job of a run landed which file name, so a second job with the same name
    either shares the file (same bytes) or fails (different bytes)."""

    def __init__(self, wheelhouse: Path) -> None:
        self.wheelhouse = wheelhouse
        self._claims: dict[str, _Claim] = {}
        self._lock = threading.Lock()

    def land(self, wheel: Path, job: str) -> WheelInfo:
        """Land ``wheel`` for ``job``; the info describes the file now in the wheelhouse."""
        info = wheel_info(wheel)
        with self._lock:
            prior = self._claims.get(wheel.name)
            if prior is None:
                land(wheel, self.wheelhouse)
                self._claims[wheel.name] = _Claim(info.sha256, job)
                return info
        if prior.sha256 != info.sha256:
            raise StageFailed(
                "land",
                f"{wheel.name}: job {prior.job} already landed a different wheel with this "
                f"name (sha256 {prior.sha256[:16]}…, this one {info.sha256[:16]}…); give the "
                "jobs distinct tags or build the wheel in one job only (build/skip)",
            )
        wheel.unlink(missing_ok=True)  # identical: both jobs point at the landed file
        return info


_landings: dict[tuple[str, Path], Landing] = {}
_landings_lock = threading.Lock()


def land_once(wheel: Path, wheelhouse: Path, *, run_id: str, job: str) -> WheelInfo:
    """:meth:`Landing.land` with the run's own :class:`Landing`."""
    with _landings_lock:
        landing = _landings.setdefault((run_id, wheelhouse), Landing(wheelhouse))
    return landing.land(wheel, job)


def set_aside(wheel: Path, failed_dir: Path) -> Path:
    failed_dir.mkdir(parents=True, exist_ok=True)
    dest = failed_dir / wheel.name
    os.replace(wheel, dest)
    return dest
