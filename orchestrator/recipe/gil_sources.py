"""Free-threading support declared in a project's extension sources, not its metadata.

Many projects that support free-threaded CPython say so only in code: each C extension
module declares `Py_MOD_GIL_NOT_USED` (its `Py_mod_gil` slot, or
`PyUnstable_Module_SetGIL`), each Cython module the `freethreading_compatible = True`
directive. That is the fact the interpreter itself acts on (a module without it turns the
GIL back on when imported), so it counts as a declaration when every extension module
source found carries it. Only text is read: nothing of the project runs.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

C_SUFFIXES = (".c", ".cc", ".cpp", ".cxx")
CYTHON_SUFFIX = ".pyx"
MAX_FILE = 4 * 1024 * 1024  # a generated amalgamation is larger than any module source
MAX_FILES = 5000  # a directory project's walk stops here (a vendored tree, a venv)
SKIP_DIRS = {".git", ".hg", ".tox", ".nox", ".venv", "venv", "build", "dist", "node_modules"}

_MODULE_INIT = re.compile(r"\bPyInit_\w+\s*\(")
_GIL_NOT_USED = re.compile(r"\bPy_MOD_GIL_NOT_USED\b")
# A Cython directive comment: only before the first statement, so only at the top.
_CYTHON_FT = re.compile(r"^#\s*cython:.*\bfreethreading_compatible\s*=\s*True\b", re.M)
# Cython >= 3.2's generated C defines this three times (a user's CYTHON_FREETHREADING_
# COMPATIBLE either way, then the directive's default last): only the last one says.
_CYTHON_C_DEFAULT = re.compile(r"^#define __Pyx_FREETHREADING_COMPATIBLE (\w+)", re.M)


@dataclass(frozen=True)
class GilSources:
    """The extension module sources found, and those that do not declare the GIL unused."""

    modules: tuple[str, ...]  # paths relative to the project (an sdist: inside its top dir)
    undeclared: tuple[str, ...]

    @property
    def declared(self) -> bool:
        return bool(self.modules) and not self.undeclared

    def summary(self) -> str:
        if self.declared:
            return (
                f"Py_MOD_GIL_NOT_USED in each of its {len(self.modules)} extension module "
                f"source(s): {_some(self.modules)}"
            )
        if not self.modules:
            return "no extension module source found to declare Py_MOD_GIL_NOT_USED"
        return (
            f"{len(self.undeclared)} of its {len(self.modules)} extension module source(s) "
            f"do not declare Py_MOD_GIL_NOT_USED: {_some(self.undeclared)}"
        )


def _some(paths: tuple[str, ...], limit: int = 4) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def scan_sdist(path: Path) -> GilSources | None:
    """The sdist's extension module sources; None when it cannot be read."""
    found: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if member.isfile() and member.size <= MAX_FILE and _is_source(name):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[name.split("/", 1)[-1]] = handle.read().decode(errors="replace")
    except (tarfile.TarError, OSError):
        return None
    return _classify(found)


def scan_directory(root: Path) -> GilSources:
    """A directory project's extension module sources (hidden and build trees skipped)."""
    found: dict[str, str] = {}
    seen = 0
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES:  # unread modules cannot count as declared
                part = _classify(found)
                cut = f"(the files past the first {MAX_FILES}, not read)"
                return GilSources((*part.modules, cut), (*part.undeclared, cut))
            path = Path(top) / name
            if _is_source(name) and path.stat().st_size <= MAX_FILE:
                found[str(path.relative_to(root))] = path.read_text(errors="replace")
    return _classify(found)


def _is_source(name: str) -> bool:
    return name.endswith((*C_SUFFIXES, CYTHON_SUFFIX))


def _classify(texts: dict[str, str]) -> GilSources:
    modules: list[str] = []
    undeclared: list[str] = []
    for name in sorted(texts):
        text = texts[name]
        cython = name.endswith(CYTHON_SUFFIX)
        if not cython and (not _MODULE_INIT.search(text) or _generated(name, texts)):
            continue  # a helper file, or Cython's output of a .pyx read instead
        if cython and _is_included(name, texts):
            continue
        modules.append(name)
        if not _declares(text, cython):
            undeclared.append(name)
    return GilSources(tuple(modules), tuple(undeclared))


def _declares(text: str, cython: bool) -> bool:
    if cython:
        return bool(_CYTHON_FT.search(text))
    defaults: list[str] = _CYTHON_C_DEFAULT.findall(text)
    if defaults:  # Cython's output shipped without its .pyx
        return defaults[-1] == "Py_MOD_GIL_NOT_USED"
    return bool(_GIL_NOT_USED.search(text))


def _generated(name: str, texts: dict[str, str]) -> bool:
    """A C file beside a .pyx of the same stem is Cython's output: the .pyx is the source
    (its directive decides what Cython writes)."""
    return str(Path(name).with_suffix(CYTHON_SUFFIX)) in texts


def _is_included(name: str, texts: dict[str, str]) -> bool:
    """A .pyx `include`d by another one is part of that module, not a module itself."""
    stem = Path(name).name
    return any(
        other != name and other.endswith(CYTHON_SUFFIX) and f'include "{stem}"' in text
        for other, text in texts.items()
    )
