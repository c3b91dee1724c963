"""Getting a dependency's artifact out of its build container: streamed to disk with a
size bound, never held in memory whole."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from orchestrator.container.session import Session, StageFailed
from orchestrator.util.archive import max_copyout_bytes


def copy_out_artifact(session: Session, path: str, name: str) -> Path:
    """The file at ``path`` in the session's container, as a host temp file."""
    with tempfile.TemporaryDirectory(prefix="orch-copyout-") as tmp:
        engine_tar = Path(tmp) / "out.tar"
        session.copy_out(path, engine_tar, max_copyout_bytes())
        fd, out_name = tempfile.mkstemp(prefix=f"orch-{name}-", suffix=".tar.gz")
        out = Path(out_name)
        try:
            with tarfile.open(engine_tar) as tar, open(fd, "wb") as dest:
                member = tar.next()
                src = tar.extractfile(member) if member is not None and member.isfile() else None
                if src is None:
                    raise StageFailed("package", f"{path} is not a file in the container")
                shutil.copyfileobj(src, dest, 1 << 16)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return out
