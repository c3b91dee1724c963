"""Compiled interpreters as cache artifacts: an interpreter tarball is stored as an entry
of the orch cache under its artifact key (spec + source sha256, images/definition.py) and
pushed to / pulled from the OCI registry cache like a dependency. So `orch cache
export/import` carries interpreters too, and a second machine pulls instead of compiling.

Entries are shared by every project (an interpreter does not depend on one), so the
registry repository is `orch/deps/orch-pythons` unless ORCH_CACHE_REPOSITORY names one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.deps import registry
from orchestrator.deps.cache import DepCache
from orchestrator.images.interpreters import Remote
from orchestrator.util import paths

PROJECT = "orch-pythons"

Log = Callable[[str], None]


def cache_remote(cache: DepCache | None = None) -> Remote:
    """The orch cache (then the registry cache) as an interpreter store's remote."""
    return Remote(
        fetch=lambda key, dest, log: fetch(cache or DepCache(paths.cache_dir()), key, dest, log),
        share=lambda key, src, meta, log: share(
            cache or DepCache(paths.cache_dir()), key, src, meta, log
        ),
    )


def fetch(cache: DepCache, key: str, dest: Path, log: Log) -> bool:
    """Put the interpreter `key` at `dest` from the cache or the registry: False on a miss
    (a fault of either is a warning and a miss: compiling is always possible)."""
    try:
        found = cache.lookup_or_miss(key, log)
        where = "orch cache"
        if found is None:
            found = registry.pull_or_miss(cache, key, PROJECT, log)
            where = "registry cache"
        if found is None:
            return False
        _copy_atomically(found, dest)
    except OSError as exc:
        log(f"[orch] warning: interpreter {key[:12]} from the cache failed, compiling: {exc}")
        return False
    log(f"[orch] interpreter {key[:12]} from the {where}")
    return True


def share(cache: DepCache, key: str, src: Path, meta: Mapping[str, Any], log: Log) -> None:
    """Keep a compiled interpreter in the orch cache and push it to the registry cache."""
    entry = {
        "name": f"python-{meta.get('tag', '?')}",
        "version": str(meta.get("source", {}).get("version", "")),
        "arch": meta.get("arch"),
        "kind": "interpreter",
        "build_seconds": meta.get("seconds"),
    }
    try:
        with cache.lock(key):
            if cache.lookup(key) is None:
                cache.store(key, src, entry)
    except OSError as exc:  # a full disk must not fail the image: the store has it
        log(f"[orch] warning: interpreter {key[:12]} not kept in the orch cache: {exc}")
        return
    registry.push_or_warn(cache, key, PROJECT, log)


def _copy_atomically(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
