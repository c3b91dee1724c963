"""Getting wheels out of a container and into the wheelhouse atomically: extracted into a
staging directory beside the wheelhouse (same filesystem), checked, then renamed in. A
failed or cancelled job leaves nothing in the wheelhouse."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

from orchestrator.report.record import WheelInfo
from orchestrator.util.hashing import sha256_file


def extract_wheels(tar_bytes: bytes, staging: Path) -> list[Path]:
    """Extract only regular *.whl members (flattened) from an engine tar."""
    staging.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if not member.isfile() or not name.endswith(".whl"):
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


def set_aside(wheel: Path, failed_dir: Path) -> Path:
    failed_dir.mkdir(parents=True, exist_ok=True)
    dest = failed_dir / wheel.name
    os.replace(wheel, dest)
    return dest
