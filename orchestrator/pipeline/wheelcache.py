"""A local, content-addressed wheel cache per image x architecture, so build and verify
environments are installed without the index once the cache holds what they need.

Layout under the orch cache: `wheels/<image-id-short>-<arch>/` holds the wheels under
their own names (written by atomic rename, never rewritten) and `sets/<key>.json`, one
per set of requirements: the wheels it resolved to, each with its sha256. A set is a hit
only when every listed wheel is present with that hash. Jobs filling the same set take
its file lock, so one downloads and the others wait and then hit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from orchestrator.container.session import Cancelled
from orchestrator.util.paths import cache_dir

LOCK_POLL_SECONDS = 0.5

LogLine = Callable[[str], None]


def set_key(purpose: str, python_tag: str, parts: Mapping[str, str]) -> str:
    """The key of a requirement set: what it is for, the interpreter and the inputs that
    decide the requirements (canonical JSON, so the order of `parts` does not matter)."""
    doc = json.dumps({"purpose": purpose, "python": python_tag, **parts}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CachedSet:
    key: str
    wheels: tuple[Path, ...]
    note: Mapping[str, object] = field(default_factory=dict)  # what the filler recorded

    def tar(self, arcdir: str, skip: tuple[str, ...] = ()) -> bytes:
        """The set's wheels as a tar for `put_tar` (under `arcdir/`), but those whose
        names start with one of `skip` (tools used from the cache's mount)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(arcdir)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            for path in self.wheels:
                if path.name.startswith(skip):
                    continue
                tar.add(str(path), arcname=f"{arcdir}/{path.name}")
        return buf.getvalue()


@dataclass(frozen=True)
class WheelCache:
    root: Path

    @classmethod
    def for_image(cls, image_id: str, arch: str, base: Path | None = None) -> WheelCache:
        short = image_id.split(":", 1)[-1][:12]
        return cls((base or cache_dir()) / "wheels" / f"{short}-{arch}")

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    def tool(self, wheel: Path, name: str) -> Path | None:
        """A wheel's `<dist>.data/scripts/<name>` binary, extracted once under tools/
        (into a temporary directory renamed into place: readers never see half a file)."""
        target = self.tools / wheel.name[: -len(".whl")]
        if not (target / name).is_file():
            self.tools.mkdir(parents=True, exist_ok=True)
            tmp = self.tools / f".{target.name}.{uuid.uuid4().hex}.tmp"
            tmp.mkdir()
            try:
                if not _extract_script(wheel, name, tmp / name):
                    return None
                with contextlib.suppress(OSError):  # another job got there first
                    os.rename(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target / name if (target / name).is_file() else None

    def env_tar(self, key: str) -> Path:
        """A set's build environment as an earlier build left it (a tar of the directory,
        its mtimes kept, so the bytecode its imports compiled stays valid)."""
        return self.root / "envs" / f"{key}.tar"

    def env_tree(self, key: str, top: str) -> Path | None:
        """A set's build environment extracted once beside its tar (`<key>.d/<top>`), for
        a read-only mount: a warm job then copies nothing in and leaves nothing for the
        engine to delete (its ~700 files cost the container's removal ~0.4 s). None when
        there is no environment or it cannot be extracted (the job copies the tar in).
        The tree is named after the tar's size and mtime: a refilled set's new tar gets a
        new tree, never the old one."""
        try:
            st = self.env_tar(key).stat()
        except OSError:
            return None
        target = self.root / "envs" / f"{key}.{st.st_size}-{st.st_mtime_ns}.d"
        if (target / top).is_dir():
            return target / top
        _sweep_trees(self.root / "envs", key)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tarfile.open(self.env_tar(key)) as tar:
                tar.extractall(tmp, filter="tar")  # names stay inside; links as they are
            if not (tmp / top).is_dir():
                return None
            with contextlib.suppress(OSError):  # another job got there first
                os.rename(tmp, target)
        except (OSError, tarfile.TarError):
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target / top if (target / top).is_dir() else None

    def store_env(self, key: str, data: bytes) -> None:
        """The environment's tar, replaced whole (its extracted tree follows: env_tree)."""
        (self.root / "envs").mkdir(parents=True, exist_ok=True)
        _atomic_write(self.env_tar(key), data)

    def keep_file(self, name: str, data: bytes) -> None:
        """A small per-image file next to the sets (written whole or not at all)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / name, data)

    def _marker(self, key: str) -> Path:
        return self.root / "sets" / f"{key}.json"

    def lookup(self, key: str) -> CachedSet | None:
        """The set if every wheel it lists is present and unchanged, else None."""
        try:
            marker = json.loads(self._marker(key).read_text())
            listed = marker["wheels"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        paths = []
        for name, digest in sorted(listed.items()):
            path = self.root / name
            if not _safe_name(name) or _sha256(path) != digest:
                return None
            paths.append(path)
        return CachedSet(key, tuple(paths), {k: v for k, v in marker.items() if k != "wheels"})

    def store(self, key: str, wheels: Mapping[str, bytes], note: Mapping[str, object]) -> CachedSet:
        """Add wheels (kept as they are if already present: other sets list them by hash)
        and record the set last, so a reader never sees a set whose wheels are missing."""
        (self.root / "sets").mkdir(parents=True, exist_ok=True)
        listed: dict[str, str] = {}
        for name, data in sorted(wheels.items()):
            if not _safe_name(name):
                continue
            path = self.root / name
            if not path.exists():
                _atomic_write(path, data)
            listed[name] = _sha256(path) or ""
        _atomic_write(self._marker(key), json.dumps({**note, "wheels": listed}, indent=1).encode())
        return CachedSet(key, tuple(self.root / n for n in sorted(listed)), dict(note))

    def store_or_warn(
        self, key: str, wheels: Mapping[str, bytes], note: Mapping[str, object], log: LogLine
    ) -> CachedSet | None:
        """store(), but a cache that cannot take the set (full disk, permissions) is only a
        warning: the cache is an optimisation, the job goes on without it."""
        try:
            return self.store(key, wheels, note)
        except OSError as exc:
            log(f"[wheels] warning: the wheel cache {self.root} could not store the set: {exc}")
            return None

    @contextlib.contextmanager
    def filling(self, key: str, cancel: threading.Event) -> Iterator[None]:
        """Held while a set is filled: concurrent jobs (threads or processes) wait."""
        (self.root / "sets").mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / "sets" / f"{key}.lock"))
        while True:
            if cancel.is_set():
                raise Cancelled("cancelled")
            try:
                lock.acquire(timeout=LOCK_POLL_SECONDS)
                break
            except filelock.Timeout:
                continue
        try:
            yield
        finally:
            lock.release()


def wheels_from_tar(data: bytes) -> dict[str, bytes]:
    """The regular `*.whl` files of a container's tar (by base name; links and other
    files ignored)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and _safe_name(name):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    out[name] = extracted.read()
    return out


def _extract_script(wheel: Path, name: str, dest: Path) -> bool:
    if not zipfile.is_zipfile(wheel):
        return False
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            parts = member.split("/")
            if len(parts) == 3 and parts[0].endswith(".data") and parts[1:] == ["scripts", name]:
                dest.write_bytes(zf.read(member))
                dest.chmod(0o755)
                return True
    return False


def _safe_name(name: str) -> bool:
    return name.endswith(".whl") and "/" not in name and not name.startswith(".")


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written entry behind
        raise


def requirement_lines(reqs: Iterable[str]) -> list[str]:
    return sorted({r.strip() for r in reqs if r.strip()})


STALE_TREE = 3600.0  # seconds: an older leftover is no job's mount any more


def _sweep_trees(envs: Path, key: str) -> None:
    """Trees of an earlier tar of this set, and extractions a killed run left half done:
    removed once they are an hour old (a running job may still have a younger one
    mounted)."""
    now = time.time()
    for old in [*envs.glob(f"{key}.*.d"), *envs.glob(f".{key}.*.tmp")]:
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_TREE:
                shutil.rmtree(old, ignore_errors=True)
