"""Read what the audit needs from one ELF file: dynamic symbols with versions, DT_* tags.

Works on any architecture (pyelftools parses the file; nothing is loaded or run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
from elftools.elf.sections import SymbolTableSection

ELF_MAGIC = b"\x7fELF"

# (e_machine, bits, little endian) -> the wheel tag's architecture name
_MACHINES: dict[tuple[str, int, bool], str] = {
    ("EM_X86_64", 64, True): "x86_64",
    ("EM_386", 32, True): "i686",
    ("EM_AARCH64", 64, True): "aarch64",
    ("EM_PPC64", 64, True): "ppc64le",
    ("EM_PPC64", 64, False): "ppc64",
    ("EM_S390", 64, False): "s390x",
    ("EM_ARM", 32, True): "armv7l",
    ("EM_RISCV", 64, True): "riscv64",
    ("EM_LOONGARCH", 64, True): "loongarch64",
}

_BINDS = {
    "STB_GLOBAL": "global",
    "STB_WEAK": "weak",
    "STB_LOCAL": "local",
    "STB_GNU_UNIQUE": "unique",
    "STB_LOOS": "unique",
}
_TYPES = {
    "STT_FUNC": "func",
    "STT_OBJECT": "object",
    "STT_TLS": "tls",
    "STT_GNU_IFUNC": "ifunc",
    "STT_LOOS": "ifunc",
    "STT_COMMON": "common",
    "STT_NOTYPE": "notype",
    "STT_SECTION": "section",
    "STT_FILE": "file",
}
_EXPORTABLE_TYPES = frozenset({"func", "object", "tls", "ifunc", "common", "notype"})


@dataclass(frozen=True)
class DynSymbol:
    name: str
    defined: bool
    bind: str  # global | weak | unique | local
    kind: str  # func | object | tls | ifunc | common | notype | ...
    visibility: str  # default | protected | hidden | internal
    version: str | None = None  # required (GLIBC_2.34) or defined version name
    version_file: str | None = None  # for a required version: the library that provides it

    @property
    def exported(self) -> bool:
        """Defined here and visible to other objects loaded into the process."""
        return (
            self.defined
            and self.bind in ("global", "weak", "unique")
            and self.visibility in ("default", "protected")
            and self.kind in _EXPORTABLE_TYPES
        )

    @property
    def nm_letter(self) -> str:
        """Roughly the letter `nm -D` prints, so reports read like the tools people know."""
        if not self.defined:
            return "w" if self.bind == "weak" else "U"
        if self.bind == "unique":
            return "u"
        if self.kind in ("object", "tls", "common"):
            return "V" if self.bind == "weak" else "D"
        if self.kind == "ifunc":
            return "i"
        return "W" if self.bind == "weak" else "T"


@dataclass(frozen=True)
class ElfInfo:
    path: str  # the path inside the wheel
    machine: str
    bits: int
    little_endian: bool
    arch: str | None  # wheel-tag arch name, None when unknown
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    symbols: tuple[DynSymbol, ...]
    version_needs: tuple[tuple[str, str], ...]  # (library, version) pairs from .gnu.version_r
    version_defs: tuple[str, ...]

    @property
    def exported(self) -> tuple[DynSymbol, ...]:
        own = set(self.version_defs)
        return tuple(s for s in self.symbols if s.exported and s.name not in own)

    @property
    def undefined(self) -> tuple[DynSymbol, ...]:
        return tuple(s for s in self.symbols if not s.defined and s.name)


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def read_elf(file: Path, wheel_path: str) -> ElfInfo | None:
    """Parse one file; None when it is not a (readable) ELF file."""
    with file.open("rb") as stream:
        if not is_elf(stream.read(4)):
            return None
        stream.seek(0)
        try:
            return _parse(stream, wheel_path)
        except (ELFError, ValueError, KeyError) as exc:  # truncated or exotic files
            raise ElfReadError(f"{wheel_path}: cannot parse ELF: {exc}") from exc


class ElfReadError(Exception):
    pass


def _parse(stream: BinaryIO, wheel_path: str) -> ElfInfo:
    elf = ELFFile(stream)
    machine = str(elf["e_machine"])
    bits = elf.elfclass
    little = elf.little_endian
    tags = _dynamic_tags(elf)
    needs, need_index = _version_needs(elf)
    defs, def_index = _version_defs(elf)
    return ElfInfo(
        path=wheel_path,
        machine=machine,
        bits=bits,
        little_endian=little,
        arch=_MACHINES.get((machine, bits, little)),
        soname=next((v for k, v in tags if k == "DT_SONAME"), None),
        needed=tuple(v for k, v in tags if k == "DT_NEEDED"),
        rpath=_split_paths(v for k, v in tags if k == "DT_RPATH"),
        runpath=_split_paths(v for k, v in tags if k == "DT_RUNPATH"),
        symbols=_symbols(elf, need_index, def_index),
        version_needs=needs,
        version_defs=defs,
    )


def _dynamic_tags(elf: ELFFile) -> list[tuple[str, str]]:
    wanted = {
        "DT_NEEDED": "needed",
        "DT_SONAME": "soname",
        "DT_RPATH": "rpath",
        "DT_RUNPATH": "runpath",
    }
    source: Any = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
    if source is None:  # section headers stripped: fall back to the PT_DYNAMIC segment
        source = next((s for s in elf.iter_segments() if isinstance(s, DynamicSegment)), None)
    if source is None:
        return []
    out: list[tuple[str, str]] = []
    for tag in source.iter_tags():
        key = tag.entry.d_tag
        if key in wanted:
            out.append((key, str(getattr(tag, wanted[key]))))
    return out


def _split_paths(values: Any) -> tuple[str, ...]:
    return tuple(p for value in values for p in str(value).split(":") if p)


def _version_needs(elf: ELFFile) -> tuple[tuple[tuple[str, str], ...], dict[int, tuple[str, str]]]:
    pairs: list[tuple[str, str]] = []
    index: dict[int, tuple[str, str]] = {}
    for section in elf.iter_sections():
        if not isinstance(section, GNUVerNeedSection):
            continue
        for verneed, auxes in section.iter_versions():
            for aux in auxes:
                pair = (str(verneed.name), str(aux.name))
                pairs.append(pair)
                index[int(aux["vna_other"])] = pair
    return tuple(pairs), index


def _version_defs(elf: ELFFile) -> tuple[tuple[str, ...], dict[int, str]]:
    names: list[str] = []
    index: dict[int, str] = {}
    for section in elf.iter_sections():
        if not isinstance(section, GNUVerDefSection):
            continue
        for verdef, auxes in section.iter_versions():
            first = next(iter(auxes), None)
            if first is None:
                continue
            names.append(str(first.name))
            index[int(verdef["vd_ndx"])] = str(first.name)
    return tuple(names), index


def _symbols(
    elf: ELFFile, need_index: dict[int, tuple[str, str]], def_index: dict[int, str]
) -> tuple[DynSymbol, ...]:
    dynsym = next(
        (
            s
            for s in elf.iter_sections()
            if isinstance(s, SymbolTableSection) and s["sh_type"] == "SHT_DYNSYM"
        ),
        None,
    )
    if dynsym is None:
        return ()
    versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
    out: list[DynSymbol] = []
    for i, sym in enumerate(dynsym.iter_symbols()):
        if not sym.name:
            continue
        version, vfile = _symbol_version(versym, i, need_index, def_index)
        defined = sym["st_shndx"] != "SHN_UNDEF"
        out.append(
            DynSymbol(
                name=str(sym.name),
                defined=defined,
                bind=_BINDS.get(str(sym["st_info"]["bind"]), "global"),
                kind=_TYPES.get(str(sym["st_info"]["type"]), "notype"),
                visibility=str(sym["st_other"]["visibility"]).removeprefix("STV_").lower(),
                version=version,
                version_file=None if defined else vfile,
            )
        )
    return tuple(out)


def _symbol_version(
    versym: GNUVerSymSection | None,
    i: int,
    need_index: dict[int, tuple[str, str]],
    def_index: dict[int, str],
) -> tuple[str | None, str | None]:
    if versym is None:
        return None, None
    ndx = versym.get_symbol(i).entry["ndx"]
    if not isinstance(ndx, int):  # VER_NDX_LOCAL / VER_NDX_GLOBAL: unversioned
        return None, None
    ndx &= 0x7FFF  # the top bit only marks a hidden (non-default) version
    if ndx in need_index:
        lib, version = need_index[ndx]
        return version, lib
    return def_index.get(ndx), None
