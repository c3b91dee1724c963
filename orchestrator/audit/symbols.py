"""Symbol classification: C++ standard-library instantiations, third-party libraries, ABI.

Everything works on mangled names (demangling is for display only), so the results do not
depend on whether c++filt is installed.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# std::, the libstdc++ extension namespaces and the C++ ABI runtime, in every mangled form an
# exported definition can take: plain (_ZSt...), nested (_ZNSt..., _ZNKSt...), the standard
# substitutions (Sa allocator, Sb basic_string, Ss string, Si/So/Sd streams), special names
# (vtable TV, VTT TT, typeinfo TI, typeinfo name TS, guard variable GV, TLS init/wrapper TH/TW),
# and entities local to a std function (Z...).
_STD_MANGLED = re.compile(
    r"^_Z(?:T[VTIS]|GV|GR|T[HW])?Z?(?:N[rVK]*[RO]?)?"
    r"(?:St|S[absiod]|9__gnu_cxx|10__cxxabiv1|11__gnu_debug)"
)
# Global operator new/delete: exporting them swaps the allocator of every library in the process.
_OPERATOR_NEW_DELETE = re.compile(r"^_Z(?:nw|na|dl|da)[jmPvSt]")
# The C-linkage part of libstdc++/libsupc++, exported when libstdc++ is linked statically.
_CXX_RUNTIME = ("__cxa_*", "__gxx_personality_*", "__dynamic_cast")


def is_std_symbol(name: str) -> bool:
    return bool(
        _STD_MANGLED.match(name)
        or _OPERATOR_NEW_DELETE.match(name)
        or any(fnmatch.fnmatchcase(name, p) for p in _CXX_RUNTIME)
    )


def _cxx_namespace(ns: str) -> tuple[str, ...]:
    """Mangled-name globs for everything in a C++ namespace."""
    n = f"{len(ns)}{ns}"
    return (f"_ZN{n}*", f"_ZNK{n}*", f"_ZT[VIS]N{n}*", f"_ZZN{n}*", f"_ZGVZN{n}*")


@dataclass(frozen=True)
class StaticLib:
    name: str
    aliases: tuple[str, ...]
    patterns: tuple[str, ...]  # fnmatch globs on the mangled symbol name


# Third-party libraries commonly linked statically into extensions, by their public prefixes.
KNOWN_LIBS: tuple[StaticLib, ...] = (
    StaticLib(
        "zlib",
        ("z", "libz", "zlib-ng-compat"),
        (
            "deflate*",
            "inflate*",
            "crc32",
            "crc32_*",
            "adler32",
            "adler32_*",
            "compress",
            "compress2",
            "compressBound",
            "uncompress",
            "uncompress2",
            "gz[a-z]*",
            "zlib*",
            "zError",
            "get_crc_table",
            "_tr_*",
            "zcalloc",
            "zcfree",
        ),
    ),
    StaticLib("zlib-ng", ("libz-ng",), ("zng_*",)),
    StaticLib("zstd", ("libzstd", "zstandard"), ("ZSTD_*", "ZDICT_*", "ZBUFF_*", "ZSTDv0*")),
    StaticLib("bzip2", ("bz2", "libbz2"), ("BZ2_*",)),
    StaticLib("xz", ("lzma", "liblzma"), ("lzma_*",)),
    StaticLib("lz4", ("liblz4",), ("LZ4*",)),
    StaticLib("snappy", ("libsnappy",), (*_cxx_namespace("snappy"), "snappy_*")),
    StaticLib("brotli", ("libbrotli",), ("Brotli*", "_kBrotli*")),
    StaticLib("libyaml", ("yaml",), ("yaml_*",)),
    StaticLib("libffi", ("ffi",), ("ffi_*",)),
    StaticLib("libxml2", ("xml2",), ("xml*", "html*", "__xml*")),
    StaticLib("libxslt", ("xslt", "libexslt"), ("xslt*", "exslt*")),
    StaticLib(
        "libjpeg-turbo",
        ("jpeg", "libjpeg", "turbojpeg"),
        ("jpeg_*", "jinit_*", "jcopy_*", "jdiv_round_up", "jround_up", "tj[A-Z]*"),
    ),
    StaticLib("libpng", ("png", "libpng16"), ("png_*",)),
    StaticLib(
        "openssl",
        ("ssl", "libssl", "crypto", "libcrypto"),
        (
            "SSL_*",
            "CRYPTO_*",
            "EVP_*",
            "OPENSSL_*",
            "OSSL_*",
            "BIO_*",
            "X509*",
            "RSA_*",
            "EC_*",
            "ERR_*",
            "PEM_*",
            "ASN1_*",
            "BN_*",
            "HMAC*",
            "RAND_*",
            "DH_*",
            "DSA_*",
            "OBJ_*",
            "ENGINE_*",
            "TLS_*",
            "DTLS_*",
            "d2i_*",
            "i2d_*",
            "SHA1*",
            "SHA256*",
            "SHA512*",
            "MD5*",
        ),
    ),
    StaticLib("libcurl", ("curl",), ("curl_*",)),
    StaticLib("sqlite", ("sqlite3",), ("sqlite3_*",)),
    StaticLib("libuv", ("uv",), ("uv_*",)),
    StaticLib("expat", ("libexpat",), ("XML_*",)),
    StaticLib("libtiff", ("tiff",), ("TIFF*", "_TIFF*")),
    StaticLib("freetype", ("freetype2",), ("FT_*",)),
    StaticLib("harfbuzz", ("hb",), ("hb_*",)),
    StaticLib("libwebp", ("webp",), ("WebP*",)),
    StaticLib("lcms2", ("lcms",), ("cms[A-Z]*",)),
    StaticLib("libarchive", ("archive",), ("archive_*",)),
    StaticLib("pcre2", ("libpcre2",), ("pcre2_*",)),
    StaticLib("libsodium", ("sodium",), ("sodium_*", "crypto_*", "randombytes*")),
    StaticLib("openblas", ("blas", "lapack"), ("cblas_*", "openblas_*", "LAPACKE_*")),
    StaticLib("protobuf", ("libprotobuf",), _cxx_namespace("google")),
    StaticLib("abseil", ("absl", "abseil-cpp"), _cxx_namespace("absl")),
    StaticLib("re2", ("libre2",), _cxx_namespace("re2")),
    StaticLib("fmt", ("libfmt",), _cxx_namespace("fmt")),
    StaticLib("boost", (), _cxx_namespace("boost")),
)


def resolve_bundled(names: Sequence[str]) -> tuple[tuple[StaticLib, ...], tuple[str, ...]]:
    """Declared static libraries -> (libraries to look for, notes about unknown names).

    A name is a known library or alias ("zlib", "libz"), or NAME=GLOB[,GLOB...] for a library
    the table does not know. An unknown plain NAME is looked for as NAME_* and NAME*.
    """
    libs: list[StaticLib] = []
    notes: list[str] = []
    for raw in names:
        name, sep, globs = raw.partition("=")
        name = name.strip()
        if sep:
            patterns = tuple(g.strip() for g in globs.split(",") if g.strip())
            libs.append(StaticLib(name, (), patterns))
            continue
        known = find_known(name)
        if known is not None:
            libs.append(known)
            continue
        guess = (f"{name}_*", f"{name.upper()}_*")
        libs.append(StaticLib(name, (), guess))
        notes.append(f"{name}: not a library orch knows; looking for {', '.join(guess)}")
    return tuple(libs), tuple(notes)


def find_known(name: str) -> StaticLib | None:
    key = name.lower().removesuffix(".a")
    for lib in KNOWN_LIBS:
        if key == lib.name.lower() or key in lib.aliases:
            return lib
    return None


def match_lib(name: str, libs: Iterable[StaticLib]) -> StaticLib | None:
    for lib in libs:
        if any(fnmatch.fnmatchcase(name, p) for p in lib.patterns):
            return lib
    return None


_MODULE_INIT = ("PyInit_*", "PyModExport_*", "_cffi_pypyinit_*")


def allowed_export(mangled: str, demangled: str, patterns: Sequence[str]) -> bool:
    """The project means to export this one (Python's module entry points always)."""
    return any(
        fnmatch.fnmatchcase(mangled, p) or fnmatch.fnmatchcase(demangled, p)
        for p in (*_MODULE_INIT, *patterns)
    )


# The C++11 string/list ABI (libstdc++'s dual ABI): new-ABI names carry std::__cxx11 or the
# [abi:cxx11] tag; old-ABI names use the std::string substitution (Ss) or plain std::list.
_NEW_ABI = re.compile(r"__cxx11|B5cxx11")
_OLD_ABI_MANGLED = re.compile(r"(?:^_ZN?K?|[RPKIE])S[sb]|St4list")
_OLD_ABI_DEMANGLED = re.compile(r"std::(?:string|wstring|basic_string<|list<)")


def uses_new_abi(mangled: str) -> bool:
    return bool(_NEW_ABI.search(mangled))


def uses_old_abi(mangled: str, demangled: str | None = None) -> bool:
    if uses_new_abi(mangled) or not mangled.startswith("_Z"):
        return False
    if demangled is not None and demangled != mangled:
        return bool(_OLD_ABI_DEMANGLED.search(demangled))
    return bool(_OLD_ABI_MANGLED.search(mangled))


class Demangler:
    """Batch demangling through c++filt when it is installed; identity otherwise."""

    def __init__(self, tool: str | None = None) -> None:
        self.tool = tool if tool is not None else shutil.which("c++filt")
        self._cache: dict[str, str] = {}

    @property
    def available(self) -> bool:
        return self.tool is not None

    def prime(self, names: Iterable[str]) -> None:
        todo = sorted({n for n in names if n.startswith("_Z") and n not in self._cache})
        if not todo or self.tool is None:
            return
        try:
            proc = subprocess.run(
                [self.tool],
                input="\n".join(todo) + "\n",
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError):
            self.tool = None  # broken tool: fall back to mangled names for the rest
            return
        lines = proc.stdout.splitlines()
        if len(lines) == len(todo):
            self._cache.update(zip(todo, lines, strict=True))

    def __call__(self, name: str) -> str:
        if name not in self._cache:
            self.prime([name])
        return self._cache.get(name, name)
