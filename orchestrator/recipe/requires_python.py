"""The project's own ``requires-python``: read from ``pyproject.toml`` (a directory) or from
the ``PKG-INFO`` of an sdist, so the plan never builds a wheel pip would refuse to install.

Only the metadata is read (no build backend runs): ``[project] requires-python`` in
pyproject.toml, else ``python_requires`` in setup.cfg; for an sdist its PKG-INFO's
``Requires-Python`` (core metadata, what pip itself reads), else its pyproject.toml.
"""

from __future__ import annotations

import configparser
import email.parser
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from orchestrator.errors import ConfigError
from orchestrator.recipe import gil_sources
from orchestrator.recipe.model import ProjectSource


@dataclass(frozen=True)
class RequiresPython:
    text: str  # as written: ">=3.10"
    origin: str  # where it was read: ".../pyproject.toml", "PyYAML-6.0.2.tar.gz:PKG-INFO"

    @property
    def specifier(self) -> SpecifierSet:
        return SpecifierSet(self.text)

    def allows(self, python: str) -> bool:
        """Whether CPython `python` ("3.11", "3.13t") satisfies it, for any patch release."""
        spec = self.specifier
        release = python.removesuffix("t")  # free-threaded: the same version number
        return any(
            spec.contains(Version(f"{release}.{patch}"), prereleases=True) for patch in range(100)
        )


def read_requires_python(project: ProjectSource) -> RequiresPython | None:
    """The project's requires-python, or None when it declares none (or cannot be read:
    the build itself will then report what is wrong with the project)."""
    read = _from_sdist if project.kind == "sdist" else _from_directory
    found = read(project.path)
    if found is None:
        return None
    text, origin = found
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise ConfigError(
            f"{origin}: requires-python {text!r} is not a valid version specifier "
            "(PEP 440, e.g. '>=3.10'); fix it in the project's metadata"
        ) from None
    return RequiresPython(text.strip(), origin)


def _from_directory(root: Path) -> tuple[str, str] | None:
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        found = _from_pyproject(pyproject.read_text(errors="replace"), str(pyproject))
        if found is not None:
            return found
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        return _from_setup_cfg(setup_cfg.read_text(errors="replace"), str(setup_cfg))
    return None


def _from_pyproject(text: str, origin: str) -> tuple[str, str] | None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{origin}: not valid TOML ({exc}); fix the project's pyproject.toml"
        ) from None
    value = data.get("project", {}).get("requires-python")
    return (str(value), origin) if value else None


def _from_setup_cfg(text: str, origin: str) -> tuple[str, str] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None  # setuptools will say what is wrong when it builds
    value = parser.get("options", "python_requires", fallback="").strip()
    return (value, origin) if value else None


def _from_sdist(path: Path) -> tuple[str, str] | None:
    """PKG-INFO at the sdist's top directory (never a nested package's)."""
    try:
        pkg_info, pyproject = _sdist_metadata(path)
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(
            f"{path}: cannot read the sdist ({exc}); is it a .tar.gz sdist?"
        ) from None
    found = _from_pkg_info(*pkg_info) if pkg_info else None
    if found is None and pyproject is not None:
        found = _from_pyproject(*pyproject)
    return found


Located = tuple[str, str]  # a file's text, and where it came from (for messages)


def _sdist_metadata(path: Path) -> tuple[Located | None, Located | None]:
    """The top directory's PKG-INFO and pyproject.toml of an sdist, each if present."""
    with tarfile.open(path, "r:*") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        top = _top_level(members)
        found: list[Located | None] = []
        for name in ("PKG-INFO", "pyproject.toml"):
            member = members.get(f"{top}/{name}") if top else None
            found.append((_read(tar, member), f"{path.name}:{top}/{name}") if member else None)
        return found[0], found[1]


def _top_level(members: dict[str, tarfile.TarInfo]) -> str | None:
    tops = {name.split("/", 1)[0] for name in members if "/" in name}
    return tops.pop() if len(tops) == 1 else None


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    handle = tar.extractfile(member)
    return handle.read().decode("utf-8", errors="replace") if handle else ""


def _from_pkg_info(text: str, origin: str) -> tuple[str, str] | None:
    headers = email.parser.HeaderParser().parsestr(text)
    value = headers.get("Requires-Python")
    return (str(value).strip(), origin) if value else None


# --- free-threading -------------------------------------------------------------------

FREE_THREADING_CLASSIFIER = "Programming Language :: Python :: Free Threading"


@dataclass(frozen=True)
class FreeThreading:
    """Whether the project declares free-threaded support, and where that was read: a
    trove classifier 'Programming Language :: Python :: Free Threading :: <level>', or,
    without one, `Py_MOD_GIL_NOT_USED` in every extension module source (gil_sources).
    An extension not written for it re-enables the GIL on import or crashes, so a
    free-threaded wheel is built only for a project that says it supports one."""

    declared: str  # the classifier's level ("2 - Beta") or the sources' summary; "" if none
    origin: str
    sources: str = ""  # without a classifier: what the extension sources say (both cases)

    def reason(self, python: str) -> str:
        return f"free-threaded {python}: the project does not declare free-threading support " + (
            self.why_not()
        )

    def why_not(self) -> str:
        said = f"; {self.sources}" if self.sources else ""
        return f"(no '{FREE_THREADING_CLASSIFIER} :: ...' classifier in {self.origin}{said})"


def read_free_threading(project: ProjectSource) -> FreeThreading | None:
    """The project's classifiers, from the sdist's PKG-INFO or pyproject.toml's
    [project] classifiers, else its extension sources' own declaration; None when it
    has no classifiers to read (nothing to go by: then build)."""
    found = _classifiers_sdist(project.path) if project.kind == "sdist" else None
    if project.kind != "sdist":
        pyproject = project.path / "pyproject.toml"
        if pyproject.is_file():
            found = _classifiers_pyproject(pyproject.read_text(errors="replace"), str(pyproject))
    if found is None:
        return None
    classifiers, origin = found
    prefix = FREE_THREADING_CLASSIFIER + " :: "
    levels = [c.removeprefix(prefix).strip() for c in classifiers if c.startswith(prefix)]
    if levels:
        return FreeThreading(levels[0], origin)
    gil = (
        gil_sources.scan_sdist(project.path)
        if project.kind == "sdist"
        else gil_sources.scan_directory(project.path)
    )
    if gil is None:
        return FreeThreading("", origin)
    where = f"{project.path.name}: " if project.kind == "sdist" else ""
    summary = gil.summary()
    return FreeThreading(summary if gil.declared else "", origin, where + summary)


def _classifiers_sdist(path: Path) -> tuple[list[str], str] | None:
    try:
        pkg_info, pyproject = _sdist_metadata(path)
    except (tarfile.TarError, OSError):
        return None  # read_requires_python has already said what is wrong with it
    if pkg_info is not None:
        headers = email.parser.HeaderParser().parsestr(pkg_info[0])
        return list(headers.get_all("Classifier") or []), pkg_info[1]
    return _classifiers_pyproject(*pyproject) if pyproject else None


def _classifiers_pyproject(text: str, origin: str) -> tuple[list[str], str] | None:
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError:
        return None
    if "classifiers" not in project and "classifiers" in project.get("dynamic", []):
        return None  # computed by the build backend: unknown here
    return [str(c) for c in project.get("classifiers", [])], origin
