"""Tar streams of host files, as the engine's copy-in expects them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def tree_tar(source: Path, arcname: str = ".") -> bytes:
    """A host directory (or file) as an uncompressed tar whose top entry is arcname."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(source), arcname=arcname)
    return buf.getvalue()
