"""Nearest sources: Debian `.orig` tarballs of the release a recipe pins that are not
byte-identical to the upstream tarball (recipes/debian-nearest.txt, fetched under their
own sha256 by scripts/mirror-from-debian.sh). A test builds a recipe from one only by
overriding that recipe's `source` in the project's `dependencies:` entry, explicitly."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.run import ROOT

LIST = ROOT / "recipes" / "debian-nearest.txt"
# Never contacted: the mirror answers by sha256 first; a port nothing listens on, on the
# loopback address, in case it does not.
UNREACHABLE = "http://127.0.0.1:9"

# Debian's +dfsg zlib drops win32/, but zlib's CMakeLists lists win32/zlib1.rc (compiled
# only on Windows): an empty stand-in lets the same CMake build run.
ZLIB_BUILD = {
    "system": "script",
    "script": (
        "mkdir -p win32 && touch win32/zlib1.rc\n"
        'cmake -S "$SRC_DIR" -B "$BUILD_DIR" "${ORCH_CMAKE_ARGS[@]}" "${ORCH_OPTIONS[@]}"\n'
        'cmake --build "$BUILD_DIR" -j "$JOBS"\n'
        'cmake --install "$BUILD_DIR"\n'
    ),
}


@dataclass(frozen=True)
class Nearest:
    recipe: str
    package: str  # Debian source package
    version: str
    sha256: str
    filename: str

    def override(self) -> dict[str, object]:
        """The `dependencies:` fields that build the recipe from this tarball."""
        fields: dict[str, object] = {
            "version": self.version,
            "source": {
                "url": [f"{UNREACHABLE}/{self.filename}"],
                "sha256": self.sha256,
                "filename": self.filename,
            },
        }
        if self.recipe == "zlib":
            fields["build"] = ZLIB_BUILD
        return fields


def nearest_sources(path: Path = LIST) -> dict[str, Nearest]:
    out: dict[str, Nearest] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        recipe, package, version, sha256, filename = line.split()
        assert re.fullmatch(r"[0-9a-f]{64}", sha256), line
        out[recipe] = Nearest(recipe, package, version, sha256, filename)
    return out


def dependency_entry(name: str, nearest: dict[str, Nearest]) -> str:
    """A `dependencies:` list item for `use: name`, from its nearest source if it has one
    (JSON is YAML: the fields go in flow style, one line each)."""
    entry = f"  - use: {name}\n"
    if name in nearest:
        for key, value in nearest[name].override().items():
            entry += f"    {key}: {json.dumps(value)}\n"
    return entry


def with_nearest(recipe_text: str, names: set[str], nearest: dict[str, Nearest]) -> str:
    """The recipe with each `- use: NAME` of ``names`` built from its nearest source."""
    for name in sorted(names):
        old = f"  - use: {name}\n"
        assert old in recipe_text, f"the recipe does not use {name}"
        recipe_text = recipe_text.replace(old, dependency_entry(name, nearest))
    return recipe_text
