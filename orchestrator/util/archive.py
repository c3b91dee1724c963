"""Safe handling of tarballs orch did not write itself: dependency artifacts (built in a
container, imported, pulled from a registry) and container output.

The rules are those of Python's tarfile ``data`` filter, checked for the whole archive
before anything is written: no absolute names, no ``..``, only regular files, directories
and links, and no link that leaves the destination, also through a chain of relative
symlinks (``a -> .``, ``a/b -> ..``). A member may not be written through a symlink.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from orchestrator import options
from orchestrator.errors import OrchError

_MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit
_CHUNK = 1 << 16


class UnsafeArchive(OrchError):
    """An archive member would land outside its destination, or is not a plain file."""


@dataclass(frozen=True)
class _Tree:
    """The names of an archive: its symlinks (name -> target) and every member name."""

    symlinks: dict[str, str]
    names: frozenset[str]


def member_name(name: str) -> str:
    """A member name relative to the archive root: ``./`` prefixes and trailing slashes
    removed (a prefix, not characters: ``.hidden/x`` stays ``.hidden/x``)."""
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    return "" if name == "." else name


def check_members(members: Sequence[tarfile.TarInfo]) -> None:
    """Raise :class:`UnsafeArchive` unless every member is safe to extract."""
    tree = _Tree(
        {member_name(m.name): m.linkname for m in members if m.issym()},
        frozenset(member_name(m.name) for m in members),
    )
    for m in members:
        _check_member(m, tree)


def check_tar(path_or_data: Path | bytes) -> None:
    """Check a (possibly compressed) tarball on disk or in memory."""
    try:
        with _open(path_or_data) as tar:
            check_members(tar.getmembers())
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise UnsafeArchive(f"not a readable tarball ({exc})") from exc


def _open(path_or_data: Path | bytes) -> tarfile.TarFile:
    if isinstance(path_or_data, bytes):
        return tarfile.open(fileobj=io.BytesIO(path_or_data), mode="r:*")
    return tarfile.open(path_or_data, "r:*")


def _check_member(m: tarfile.TarInfo, tree: _Tree) -> None:
    name = member_name(m.name)
    parts = _relative_parts(name, m.name)
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        raise UnsafeArchive(f"member {m.name!r} is a device, fifo or other special file")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if parent in tree.symlinks:
            raise UnsafeArchive(f"member {m.name!r} is written through the symlink {parent!r}")
    if m.issym():
        if PurePosixPath(m.linkname).is_absolute():
            raise UnsafeArchive(f"symlink {m.name!r} -> {m.linkname!r} escapes (absolute)")
        if _resolve(parts[:-1], m.linkname, tree, 0) is None:
            raise UnsafeArchive(f"symlink {m.name!r} -> {m.linkname!r} escapes the destination")
    if m.islnk():
        target = member_name(m.linkname)
        target_parts = _relative_parts(target, m.linkname)
        if target not in tree.names or any(
            "/".join(target_parts[:i]) in tree.symlinks for i in range(1, len(target_parts) + 1)
        ):
            raise UnsafeArchive(
                f"hard link {m.name!r} -> {m.linkname!r} does not name a file of the archive"
            )


def _relative_parts(name: str, original: str) -> list[str]:
    p = PurePosixPath(name)
    if p.is_absolute() or not name:
        raise UnsafeArchive(f"member {original!r} escapes the destination (absolute or empty)")
    parts = [x for x in p.parts if x != "."]
    if ".." in parts:
        raise UnsafeArchive(f"member {original!r} escapes the destination (contains '..')")
    return parts


def _resolve(base: list[str], target: str, tree: _Tree, hops: int) -> list[str] | None:
    """Where ``target`` (relative to directory ``base``) points, following the archive's
    own symlinks; None if it leaves the root at any step."""
    if hops > _MAX_LINK_HOPS:
        return None
    here = list(base)
    for part in PurePosixPath(target).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return None
            here.pop()
            continue
        here.append(part)
        link = tree.symlinks.get("/".join(here))
        if link is not None:
            if PurePosixPath(link).is_absolute():
                return None
            resolved = _resolve(here[:-1], link, tree, hops + 1)
            if resolved is None:
                return None
            here = resolved
    return here


# --- extraction and rewriting --------------------------------------------------------


def extract(source: Path | bytes, dest: Path) -> None:
    """Extract a checked tarball into ``dest`` (created); nothing is written when any
    member is unsafe, and a failed extraction leaves no partial ``dest`` behind."""
    check_tar(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with _open(source) as tar:
            tar.extractall(tmp, filter="data")
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merge(artifacts: Sequence[Path], arcroot: str = "") -> bytes:
    """Checked tarballs merged into one uncompressed tar, each member moved under
    ``arcroot`` (hard-link targets too); the first archive to name a path wins."""
    root = member_name(arcroot)
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for artifact in artifacts:
            check_tar(artifact)
            with tarfile.open(artifact, "r:*") as tar:
                for member, data in _members(tar):
                    name = member_name(member.name)
                    if not name or name in seen:
                        continue
                    seen.add(name)
                    member.name = _under(root, name)
                    if member.islnk():
                        member.linkname = _under(root, member_name(member.linkname))
                    out.addfile(member, data)
    return buf.getvalue()


def _under(root: str, name: str) -> str:
    return f"{root}/{name}" if root else name


def _members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    for member in tar:
        yield member, tar.extractfile(member) if member.isfile() else None


def copy_bounded(chunks: Iterator[bytes], out: IO[bytes], limit: int, what: str) -> int:
    """Write ``chunks`` to ``out``; raise :class:`OrchError` once more than ``limit``
    bytes arrived (so a runaway build cannot fill the host's memory or disk)."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise OrchError(
                f"{what} is larger than {limit // (1 << 20)} MiB; "
                "raise ORCH_MAX_COPYOUT_MB if that is expected"
            )
        out.write(chunk)
    return total


MAX_COPYOUT_ENV = options.MAX_COPYOUT_MB
DEFAULT_MAX_COPYOUT_MB = 4096


def max_copyout_bytes() -> int:
    """The bound on one copy out of a container (ORCH_MAX_COPYOUT_MB, default 4 GiB)."""
    raw = options.env().max_copyout_mb
    try:
        mb = int(raw) if raw else DEFAULT_MAX_COPYOUT_MB
    except ValueError:
        raise OrchError(f"{MAX_COPYOUT_ENV}={raw!r} is not a whole number of MiB") from None
    if mb <= 0:
        raise OrchError(f"{MAX_COPYOUT_ENV} must be positive, not {mb}")
    return mb << 20


def rooted_tar(parts: Sequence[tuple[bytes, str]], dirs: Sequence[str] = ()) -> bytes:
    """Tars each meant for its own target directory, as one tar for "/": `dirs` first
    (0755, as `Session.mkdirs` makes them), then each part's members under its target.
    A member that would leave its target is refused, as the engine's copy refuses it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for path in dirs:
            info = tarfile.TarInfo(path.strip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            dst.addfile(info)
        for data, target in parts:
            base = target.strip("/")
            with tarfile.open(fileobj=io.BytesIO(data)) as src:
                for member in src:
                    body = src.extractfile(member) if member.isfile() else None
                    member.name = _inside(base, member.name)
                    if member.islnk():  # a hard link names a member of the same tar
                        member.linkname = _inside(base, member.linkname)
                    dst.addfile(member, body)
    return out.getvalue()


def _inside(base: str, name: str) -> str:
    joined = posixpath.normpath(posixpath.join(base, name.lstrip("/")))
    if base and joined != base and not joined.startswith(base + "/"):
        raise OrchError(f"a tar member leaves {base}: {name}")
    return joined
