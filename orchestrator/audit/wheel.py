"""Open a wheel: its tags (file name and WHEEL file), members, RECORD, and its ELF files."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .elf import ElfInfo, ElfReadError, is_elf, read_elf


class WheelError(Exception):
    """The file is missing, not a zip, or not named like a wheel."""


@dataclass(frozen=True)
class Wheel:
    path: Path
    distribution: str
    version: str
    interpreter_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]
    full_tags: tuple[str, ...]  # every py-abi-platform triple of the file name
    wheel_file_tags: tuple[str, ...]  # the WHEEL file's Tag: lines
    dist_info: str | None  # e.g. "pkg-1.0.dist-info"
    members: tuple[zipfile.ZipInfo, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.filename for m in self.members if not m.is_dir())

    @property
    def record_path(self) -> str | None:
        return None if self.dist_info is None else f"{self.dist_info}/RECORD"

    @property
    def libs_dir(self) -> str:
        """Where auditwheel repair grafts libraries: <dist>.libs at the wheel's root."""
        return f"{self.distribution}.libs"


def open_wheel(path: Path) -> Wheel:
    if not path.is_file():
        raise WheelError(f"{path}: no such file")
    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise WheelError(f"{path}: not a wheel file name ({exc})") from exc
    try:
        with zipfile.ZipFile(path) as zf:
            members = tuple(zf.infolist())
            dist_info = _find_dist_info(members, str(name))
            wheel_tags = _wheel_file_tags(zf, dist_info)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WheelError(f"{path}: cannot read as a zip archive ({exc})") from exc
    ordered = sorted(tags, key=str)
    return Wheel(
        path=path,
        distribution=path.name.split("-")[0],
        version=str(version),
        interpreter_tags=tuple(sorted({t.interpreter for t in ordered})),
        abi_tags=tuple(sorted({t.abi for t in ordered})),
        platform_tags=tuple(sorted({t.platform for t in ordered})),
        full_tags=tuple(str(t) for t in ordered),
        wheel_file_tags=wheel_tags,
        dist_info=dist_info,
        members=members,
    )


def _find_dist_info(members: tuple[zipfile.ZipInfo, ...], name: str) -> str | None:
    candidates = sorted(
        {
            m.filename.split("/")[0]
            for m in members
            if m.filename.count("/") == 1 and m.filename.endswith(".dist-info/WHEEL")
        }
    )
    if not candidates:
        return None
    wanted = name.replace("-", "_").lower()
    for cand in candidates:
        if cand.split("-")[0].replace(".", "_").lower() == wanted:
            return cand
    return candidates[0]


def _wheel_file_tags(zf: zipfile.ZipFile, dist_info: str | None) -> tuple[str, ...]:
    if dist_info is None:
        return ()
    text = zf.read(f"{dist_info}/WHEEL").decode("utf-8", "replace")
    headers = HeaderParser().parsestr(text)
    return tuple(sorted(headers.get_all("Tag") or ()))


def extract_elfs(wheel: Wheel, dest: Path) -> tuple[list[ElfInfo], list[str]]:
    """Unpack the ELF members to dest and parse them; also return parse errors."""
    elfs: list[ElfInfo] = []
    errors: list[str] = []
    with zipfile.ZipFile(wheel.path) as zf:
        for info in wheel.members:
            if info.is_dir() or info.file_size < 52:  # smaller than any ELF header
                continue
            with zf.open(info) as stream:
                if not is_elf(stream.read(4)):
                    continue
            target = dest / _safe_relative(info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            try:
                parsed = read_elf(target, info.filename)
            except ElfReadError as exc:
                errors.append(str(exc))
                continue
            if parsed is not None:
                elfs.append(parsed)
    return elfs, errors


def _safe_relative(name: str) -> Path:
    # zip names are untrusted: keep them below dest whatever ".." or "/" they hold
    parts = [p for p in PurePosixPath(name).parts if p not in ("", "/", ".", "..")]
    return Path(*parts) if parts else Path("_")
