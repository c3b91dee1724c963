"""Where orch keeps its on-disk state (sources, dependency artifacts, locks).

One root, overridable by ``$ORCH_CACHE_DIR`` so CI can point it at a cached volume.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

from orchestrator import options

ENV_CACHE_DIR = options.CACHE_DIR


def cache_dir() -> Path:
    """The cache root: ``$ORCH_CACHE_DIR`` if set (and non-empty), else the user cache dir."""
    override = options.env().cache_dir
    if override is not None:
        return override
    return Path(platformdirs.user_cache_dir("orch", appauthor=False))


def source_store() -> Path:
    """The content-addressed store of downloaded source archives."""
    return cache_dir() / "sources"
