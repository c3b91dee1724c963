"""What a static dependency really defines: the global symbols in the symbol tables of the
``.a`` archives it installed (the dependency's prefix artifact), so exports are attributed
to a library by fact, not by a name prefix a project's own function may share.

An archive's index (the ``/`` or ``/SYM64/`` member that ``ar s``/``ranlib`` write) lists
every global definition; archives without one are read member by member with pyelftools.
"""

from __future__ import annotations

import functools
import io
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

AR_MAGIC = b"!<arch>\n"
_HEADER = 60


@dataclass(frozen=True)
class LinkedLibrary:
    """A dependency the job linked: its name, its archives and what they define."""

    name: str
    archives: tuple[str, ...]  # paths inside the prefix: lib/libjpeg.a
    symbols: frozenset[str]


def linked_libraries(artifacts: Mapping[str, Path]) -> tuple[LinkedLibrary, ...]:
    """Dependency name -> its artifact (a tar.gz of the files it installed) -> what its
    static archives define. Dependencies that installed no archive are left out."""
    out = []
    for name, artifact in artifacts.items():
        st = artifact.stat()
        archives = _artifact_archives(str(artifact), st.st_mtime_ns, st.st_size)
        if archives:
            symbols = frozenset().union(*(syms for _path, syms in archives))
            out.append(LinkedLibrary(name, tuple(p for p, _ in archives), symbols))
    return tuple(out)


def parse_archive_option(text: str) -> LinkedLibrary:
    """`orch audit --archive NAME=PATH`: a static archive (.a) or a dependency's prefix
    artifact (.tar.gz) the wheel was linked against. Raises ValueError when unusable."""
    name, sep, raw = text.partition("=")
    path = Path(raw)
    if not sep or not name.strip() or not raw:
        raise ValueError(
            f"--archive {text!r}: expected NAME=PATH (a .a file or an artifact .tar.gz)"
        )
    if not path.is_file():
        raise ValueError(f"--archive {text!r}: {path} is not a file")
    if path.name.endswith(".a"):
        symbols = archive_symbols(path.read_bytes())
        if not symbols:
            raise ValueError(f"--archive {text!r}: {path} is not an ar archive with global symbols")
        return LinkedLibrary(name.strip(), (path.name,), symbols)
    try:
        found = linked_libraries({name.strip(): path})
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"--archive {text!r}: cannot read {path}: {exc}") from None
    if not found:
        raise ValueError(f"--archive {text!r}: {path} holds no static archive (.a)")
    return found[0]


@functools.lru_cache(maxsize=64)  # every job of a group audits against the same artifacts
def _artifact_archives(
    artifact: str, _mtime_ns: int, _size: int
) -> tuple[tuple[str, frozenset[str]], ...]:
    found = []
    with tarfile.open(artifact, "r:*") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".a"):
                handle = tar.extractfile(member)
                if handle is not None:
                    name = str(PurePosixPath(member.name.lstrip("./")))
                    found.append((name, archive_symbols(handle.read())))
    return tuple(sorted(found))


def archive_symbols(data: bytes) -> frozenset[str]:
    """Global symbols an ar archive defines ('' when it is not an archive)."""
    if not data.startswith(AR_MAGIC):
        return frozenset()
    members = list(_members(data))
    for name, body in members:
        if name == "/":
            return _index(body, 4)
        if name == "/SYM64/":
            return _index(body, 8)
    return frozenset(
        s for name, body in members if not name.startswith("/") for s in _defined(body)
    )


def _members(data: bytes) -> Iterator[tuple[str, bytes]]:
    pos = len(AR_MAGIC)
    while pos + _HEADER <= len(data):
        header = data[pos : pos + _HEADER]
        name = header[:16].decode("ascii", "replace").rstrip()
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            return  # a damaged archive: what was read so far is all there is
        body = data[pos + _HEADER : pos + _HEADER + size]
        yield name, body
        pos += _HEADER + size + (size & 1)  # members are 2-byte aligned


def _index(body: bytes, width: int) -> frozenset[str]:
    """The archive index: count, offsets (big-endian), then NUL-terminated names."""
    count = int.from_bytes(body[:width], "big")
    names = body[width + count * width :].split(b"\0")
    return frozenset(n.decode("utf-8", "replace") for n in names[:count] if n)


def _defined(obj: bytes) -> Iterator[str]:
    """Global and weak definitions in one object file's .symtab."""
    try:
        elf = ELFFile(io.BytesIO(obj))
        for section in elf.iter_sections():
            if not isinstance(section, SymbolTableSection):
                continue
            for sym in section.iter_symbols():
                bind = sym["st_info"]["bind"]
                if bind in ("STB_GLOBAL", "STB_WEAK") and sym["st_shndx"] != "SHN_UNDEF":
                    yield sym.name
    except (ELFError, ValueError):
        return
