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
from orchestrator.recipe.model import ProjectSource


@dataclass(frozen=True)
class RequiresPython:
    text: str  # as written: ">=3.10"
    origin: str  # where it was read: ".../pyproject.toml", "PyYAML-6.0.2.tar.gz:PKG-INFO"

    @property
    def specifier(self) -> SpecifierSet:
        return SpecifierSet(self.text)

    def allows(self, python: str) -> bool:
        """Whether CPython `python` ("3.11") satisfies it, for any patch release of it."""
        spec = self.specifier
        return any(
            spec.contains(Version(f"{python}.{patch}"), prereleases=True) for patch in range(100)
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
        with tarfile.open(path, "r:*") as tar:
            members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
            top = _top_level(members)
            pkg_info = members.get(f"{top}/PKG-INFO") if top else None
            if pkg_info is not None:
                found = _from_pkg_info(_read(tar, pkg_info), f"{path.name}:{top}/PKG-INFO")
                if found is not None:
                    return found
            pyproject = members.get(f"{top}/pyproject.toml") if top else None
            if pyproject is not None:
                return _from_pyproject(_read(tar, pyproject), f"{path.name}:{top}/pyproject.toml")
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(
            f"{path}: cannot read the sdist ({exc}); is it a .tar.gz sdist?"
        ) from None
    return None


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
