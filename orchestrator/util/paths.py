"""Where orch keeps its on-disk state (sources, dependency artifacts, locks).

One root, overridable by ``$ORCH_CACHE_DIR`` so CI can point it at a cached volume.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_CACHE_DIR = "ORCH_CACHE_DIR"


def cache_dir() -> Path:
    """The cache root: ``$ORCH_CACHE_DIR`` if set (and non-empty), else the user cache dir."""
    override = os.environ.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser().absolute()
    return Path(platformdirs.user_cache_dir("orch", appauthor=False))


def source_store() -> Path:
    """The content-addressed store of downloaded source archives."""
    return cache_dir() / "sources"
