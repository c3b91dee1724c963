"""The content-addressed cache of built dependencies.

An entry is the installed prefix tree of one dependency, as ``artifact.tar.gz``, with a
``meta.json`` beside it, under ``<root>/deps/<key[:2]>/<key>/``. The key hashes everything
that affects the build's output (:func:`dependency_key`), so a hit can be reused as-is.

Entries appear atomically (built in a temp dir, then renamed), are re-verified against
their recorded sha256 on every use, and a per-key file lock lets concurrent orch processes
agree on who builds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import filelock

from orchestrator.deps.buildsys import rendered_steps
from orchestrator.errors import ConfigError, OrchError
from orchestrator.recipe.model import DependencySpec
from orchestrator.util.archive import UnsafeArchive, check_tar
from orchestrator.util.hashing import sha256_file

FORMAT_VERSION = 1  # of meta.json; the key hashes what orch generates, not this number
ARTIFACT = "artifact.tar.gz"
META = "meta.json"
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 16
_STALE_TMP_SECONDS = 24 * 3600


class CacheError(OrchError):
    """A cache entry cannot be stored, exported or imported."""


# --- keys ---------------------------------------------------------------------------


def dependency_key(
    dep: DependencySpec,
    *,
    dep_keys: Mapping[str, str],
    image_id: str,
    arch: str,
    toolchain: str,
    recipe_dir: Path,
) -> str:
    """sha256 of a canonical JSON of every input that affects the built artifact.

    ``dep_keys`` holds the keys of the dependency's requirements; as each of those hashes
    its own requirements, a change anywhere below changes this key too. Where the source
    comes from (URLs, mirrors) and where the recipe says it (``origin``) do not count.
    Everything orch generates to build it (flags, configure/cmake/meson arguments,
    post-install steps, packaging) counts through the rendered script, so changing orch's
    generator changes the key; so does ``network`` (an online build is another artifact).
    """
    missing = [r for r in dep.requires if r not in dep_keys]
    if missing:
        raise ConfigError(
            f"dependency {dep.name}: no cache key yet for its requirement(s) "
            f"{', '.join(missing)} (keys are computed in dependency order)"
        )
    doc = {
        "generated": hashlib.sha256(rendered_steps(dep).encode()).hexdigest(),
        "network": dep.network,
        "name": dep.name,
        "version": dep.version,
        "source": {
            "sha256": dep.source.sha256.lower(),
            "strip_components": dep.source.strip_components,
            "patches": [_patch_hash(p, recipe_dir, dep.name) for p in dep.source.patches],
        },
        "build_system": dep.build_system,
        "options": list(dep.options),
        "script": dep.script,
        "env": sorted([k, v] for k, v in dep.env),
        "exports": dataclasses.asdict(dep.exports),
        "requires": {r: dep_keys[r] for r in sorted(dep.requires)},
        "image": image_id,
        "arch": arch,
        "toolchain": toolchain,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _patch_hash(patch: Path, recipe_dir: Path, dep_name: str) -> str:
    # The patch's contents matter, not its name or location.
    path = patch if patch.is_absolute() else recipe_dir / patch
    try:
        return sha256_file(path)
    except OSError as exc:
        raise ConfigError(f"dependency {dep_name}: cannot read patch {path}: {exc}") from exc


def check_key(key: str) -> str:
    """The key, if it is one (64 lowercase hex digits); it becomes a path, so be strict."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise CacheError(f"{key!r} is not a cache key (64 lowercase hex digits)")
    return key


# --- entries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path  # the entry directory
    meta: Mapping[str, Any]

    @property
    def artifact(self) -> Path:
        return self.path / ARTIFACT

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "?"))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "?"))

    @property
    def size(self) -> int:
        return int(self.meta.get("size", 0))


@dataclass
class ImportResult:
    imported: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already in the cache, verified
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def _noop(_: str) -> None:
    pass


class DepCache:
    """The dependency artifact cache rooted at ``root`` (entries live in ``root/deps``)."""

    def __init__(self, root: Path, *, log: Callable[[str], None] = _noop) -> None:
        self.root = root
        self.deps = root / "deps"
        self.log = log

    # -- layout --

    def entry_dir(self, key: str) -> Path:
        check_key(key)
        return self.deps / key[:2] / key

    def _tmp_dir(self) -> Path:
        d = self.deps / ".tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- locking --

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold the key's lock (across lookup -> build -> store); waits unless ``timeout``."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(locks / f"{check_key(key)}.lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            self.log(f"waiting for another orch process working on cache entry {key[:12]}")
            try:
                lock.acquire(timeout=timeout)
            except filelock.Timeout as exc:
                raise CacheError(f"timed out waiting for the lock on {key[:12]}") from exc
        try:
            yield
        finally:
            lock.release()

    # -- read --

    def read_meta(self, key: str) -> dict[str, Any] | None:
        """The entry's meta if it parses and is consistent with the key, else None."""
        try:
            return _load_meta(self.entry_dir(key) / META, key)
        except (OSError, ValueError):
            return None

    def lookup(self, key: str) -> Path | None:
        """The verified artifact of ``key``; a corrupt entry is removed and reported as a miss."""
        d = self.entry_dir(key)
        if not d.is_dir():
            return None
        problem = verify_entry(d, key)
        if problem:
            self.log(f"cache entry {key[:12]} is corrupt ({problem}); removing it")
            self.remove(key)
            return None
        return d / ARTIFACT

    def lookup_or_miss(self, key: str, warn: Callable[[str], None]) -> Path | None:
        """:meth:`lookup`, with a disk fault (unreadable, I/O error) a warning and a miss."""
        try:
            return self.lookup(key)
        except (OSError, CacheError) as exc:
            warn(f"[orch] warning: local cache unreadable, treating {key[:12]} as a miss: {exc}")
            return None

    def entries(self) -> list[Entry]:
        """Every entry whose meta reads back (not re-hashed: use lookup for that)."""
        out: list[Entry] = []
        if not self.deps.is_dir():
            return out
        for shard in sorted(self.deps.iterdir()):
            if shard.name.startswith(".") or not shard.is_dir():
                continue
            for d in sorted(shard.iterdir()):
                meta = self.read_meta(d.name) if KEY_RE.match(d.name) else None
                if meta is not None:
                    out.append(Entry(d.name, d, meta))
        return out

    # -- write --

    def store(self, key: str, artifact_file: Path, meta: Mapping[str, Any]) -> Path:
        """Add ``artifact_file`` (copied) as the entry for ``key``; the stored artifact path.

        ``meta`` should carry name, version and build_seconds; key, sha256, size and
        created are filled in. A given ``sha256`` must match the file, else nothing is kept.
        """
        d = self.entry_dir(key)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:12]}-", dir=self._tmp_dir()))
        try:
            full = self._fill_entry(tmp, key, artifact_file, meta)
            self._publish(tmp, d, key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.log(f"cached {full.get('name', '?')} {full.get('version', '')} as {key[:12]}")
        return d / ARTIFACT

    def store_or_keep(
        self, key: str, artifact_file: Path, meta: Mapping[str, Any], warn: Callable[[str], None]
    ) -> Path:
        """Cache a freshly built artifact and return the cached copy; when the cache cannot
        take it (disk full, read-only) warn and return the built file itself. An unsafe
        artifact is an error, not a cache fault."""
        problem = check_artifact_tree(artifact_file)
        if problem:
            raise CacheError(problem)
        try:
            stored = self.store(key, artifact_file, meta)
        except (OSError, CacheError) as exc:
            warn(f"[orch] warning: could not cache {key[:12]}, using it uncached: {exc}")
            return artifact_file
        artifact_file.unlink(missing_ok=True)
        return stored

    def _fill_entry(
        self, tmp: Path, key: str, artifact_file: Path, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        shutil.copyfile(artifact_file, tmp / ARTIFACT)
        problem = check_artifact_tree(tmp / ARTIFACT)  # whoever made it, it must be safe
        if problem:
            raise CacheError(f"not caching {key[:12]}: {problem}")
        digest = sha256_file(tmp / ARTIFACT)  # hash what we keep, not what we were given
        want = meta.get("sha256")
        if want is not None and want != digest:
            raise CacheError(
                f"artifact for {key[:12]} has sha256 {digest}, but its meta says {want}"
            )
        full = {
            "name": "",
            "version": "",
            "build_seconds": 0.0,
            **dict(meta),
            "key": key,
            "sha256": digest,
            "size": (tmp / ARTIFACT).stat().st_size,
            "created": meta.get("created", time.time()),
            "format": FORMAT_VERSION,
        }
        (tmp / META).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        return full

    def _publish(self, tmp: Path, d: Path, key: str) -> None:
        """Rename the finished temp dir into place; an existing good entry wins."""
        d.parent.mkdir(parents=True, exist_ok=True)
        if d.exists():
            if verify_entry(d, key) is None:
                return  # someone stored it first; theirs is as good as ours
            self.remove(key)
        try:
            os.rename(tmp, d)
        except OSError:
            if verify_entry(d, key) is not None:  # lost a race to a bad writer: report it
                raise

    def remove(self, key: str) -> None:
        """Delete an entry: renamed aside first, so readers never see a half-deleted one."""
        d = self.entry_dir(key)
        if not d.exists():
            return
        aside = Path(tempfile.mkdtemp(prefix="rm-", dir=self._tmp_dir())) / key
        try:
            os.rename(d, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside.parent, ignore_errors=True)

    def clear(self) -> int:
        """Remove every entry (and leftover temp dirs); how many entries were removed."""
        n = 0
        for e in self.entries():
            self.remove(e.key)
            n += 1
        self.clean_tmp(max_age=0)
        return n

    def prune(self, *, older_than: float | None = None, keep: Iterable[str] = ()) -> list[str]:
        """Remove entries created more than ``older_than`` seconds ago, except ``keep``."""
        now = time.time()
        kept = set(keep)
        removed: list[str] = []
        for e in self.entries():
            created = float(e.meta.get("created", 0))
            if e.key not in kept and (older_than is None or now - created > older_than):
                self.remove(e.key)
                removed.append(e.key)
        self.clean_tmp()
        return removed

    def clean_tmp(self, max_age: float = _STALE_TMP_SECONDS) -> None:
        """Delete temp dirs a crashed process left behind."""
        tmp = self.deps / ".tmp"
        if not tmp.is_dir():
            return
        now = time.time()
        for d in tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - d.stat().st_mtime >= max_age:
                    shutil.rmtree(d, ignore_errors=True)

    # -- export / import --

    def export(self, dest: Path, keys: Iterable[str] | None = None) -> list[str]:
        """Copy verified entries to a directory or a ``.tar``/``.tar.gz``/``.tgz`` file.

        The layout is the cache's own (``deps/<xx>/<key>/``), so an exported directory
        also works as an ``ORCH_CACHE_DIR``. Returns the exported keys.
        """
        wanted = [check_key(k) for k in keys] if keys is not None else None
        chosen = self._exportable(wanted)
        if _tar_mode(dest) is not None:
            _write_tar(dest, [(k, self.entry_dir(k)) for k in chosen])
        else:
            for k in chosen:
                _copy_entry(self.entry_dir(k), DepCache(dest).entry_dir(k))
        return chosen

    def _exportable(self, wanted: list[str] | None) -> list[str]:
        keys = wanted if wanted is not None else [e.key for e in self.entries()]
        out: list[str] = []
        for k in keys:
            if self.lookup(k) is None:
                if wanted is not None:
                    raise CacheError(f"cache entry {k} is not in the cache (or was corrupt)")
                continue
            out.append(k)
        return out

    def import_(self, source: Path) -> ImportResult:
        """Add the entries of an exported directory or tarball, each verified first."""
        if source.is_dir():
            return self._import_dir(source)
        if source.is_file():
            with tempfile.TemporaryDirectory(dir=self._tmp_dir(), prefix="import-") as tmp:
                result = ImportResult()
                _safe_extract(source, Path(tmp), result)
                inner = self._import_dir(Path(tmp))
                result.imported += inner.imported
                result.present += inner.present
                result.rejected += inner.rejected
                return result
        raise CacheError(f"{source}: no such directory or file to import")

    def _import_dir(self, source: Path) -> ImportResult:
        result = ImportResult()
        for meta_file in sorted(source.rglob(META)):
            d = meta_file.parent
            if any(p.startswith(".") for p in d.relative_to(source).parts):
                continue  # an exported cache root's own temp dirs
            if not KEY_RE.match(d.name):
                result.rejected.append((str(d), "directory name is not a cache key"))
                continue
            problem = verify_entry(d, d.name) or check_artifact_tree(d / ARTIFACT)
            if problem:
                result.rejected.append((d.name, problem))
                self.log(f"not importing {d.name[:12]}: {problem}")
            elif self.lookup(d.name) is not None:
                result.present.append(d.name)
            else:
                meta = _load_meta(meta_file, d.name)
                self.store(d.name, d / ARTIFACT, meta)
                result.imported.append(d.name)
        return result


# --- verification -------------------------------------------------------------------


def _load_meta(path: Path, key: str) -> dict[str, Any]:
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict):
        raise ValueError("meta.json is not an object")
    if meta.get("key") != key:
        raise ValueError(f"meta.json names key {meta.get('key')!r}")
    if not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("size"), int):
        raise ValueError("meta.json lacks sha256/size")
    return meta


def verify_entry(d: Path, key: str) -> str | None:
    """Why the entry directory is not a valid entry for ``key``, or None if it is."""
    try:
        meta = _load_meta(d / META, key)
    except FileNotFoundError:
        return "no meta.json"
    except (OSError, ValueError) as exc:
        return f"bad meta.json: {exc}"
    artifact = d / ARTIFACT
    try:
        size = artifact.stat().st_size
        if size != meta["size"]:
            return f"artifact is {size} bytes, meta says {meta['size']}"
        digest = sha256_file(artifact)
    except OSError as exc:
        return f"artifact unreadable: {exc.strerror or exc}"
    if digest != meta["sha256"]:
        return f"artifact sha256 {digest} != recorded {meta['sha256']}"
    return None


def check_artifact_tree(artifact: Path) -> str | None:
    """Why an artifact (built, imported or pulled) is unsafe to unpack into a prefix, or
    None: the rules of tarfile's ``data`` filter, symlink chains included."""
    try:
        check_tar(artifact)
    except UnsafeArchive as exc:
        return f"artifact rejected: {exc}"
    return None


# --- export / import helpers --------------------------------------------------------


def _tar_mode(dest: Path) -> Literal["w", "w:gz"] | None:
    name = dest.name
    if name.endswith((".tar.gz", ".tgz")):
        return "w:gz"
    if name.endswith(".tar"):
        return "w"
    return None


def _write_tar(dest: Path, entries: list[tuple[str, Path]]) -> None:
    """Write the tarball beside ``dest`` and rename it into place: never a partial file."""
    mode = _tar_mode(dest)
    assert mode is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tarfile.open(tmp, mode) as tar:
            for key, d in entries:
                for fname in (META, ARTIFACT):
                    tar.add(d / fname, arcname=f"deps/{key[:2]}/{key}/{fname}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_entry(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=".tmp-"))
    try:
        for fname in (ARTIFACT, META):
            shutil.copyfile(src / fname, tmp / fname)
        if dst.exists():
            shutil.rmtree(dst)
        os.rename(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_MEMBER_RE = re.compile(r"^(?:[\w.-]+/)*([0-9a-f]{64})/(meta\.json|artifact\.tar\.gz)$")


def _safe_extract(archive: Path, dest: Path, result: ImportResult) -> None:
    """Extract only ``.../<key>/{meta.json,artifact.tar.gz}`` regular files; report the rest."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                match = _MEMBER_RE.match(m.name.removeprefix("./"))
                if m.isdir():
                    continue
                if not match or not m.isfile() or ".." in m.name.split("/"):
                    result.rejected.append((m.name, "not a cache entry file"))
                    continue
                key, fname = match.groups()
                target = dest / key / fname
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                with src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise CacheError(f"{archive}: not a readable cache export ({exc})") from exc
