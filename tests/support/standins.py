"""Stand-ins: Debian `.orig` tarballs that are not byte-identical to the upstream tarball a
recipe pins (recipes/stand-ins.tsv; recipes/README.md says how each differs), fetched
under their own sha256 by scripts/mirror-from-debian.sh. A test builds a recipe from one
only by overriding that recipe's `version` and `source` in the project's `dependencies:`
entry, explicitly, and only when the mirror lacks the recipe's own tarball."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.recipe.model import DependencySpec, SourceSpec
from orchestrator.util.hashing import sha256_file
from tests.support.run import ROOT

RECIPES = ROOT / "recipes"
LIST = RECIPES / "stand-ins.tsv"
# Never contacted: the mirror answers by sha256 first; a port nothing listens on, on the
# loopback address, in case it does not.
UNREACHABLE = "http://127.0.0.1:9"


@dataclass(frozen=True)
class StandIn:
    recipe: str
    package: str  # Debian source package
    suite: str
    version: str  # the stand-in's release, which may differ from the recipe's
    sha256: str
    filename: str
    patches: tuple[Path, ...]  # for files the repack dropped that the build names

    @property
    def source(self) -> SourceSpec:
        return SourceSpec(
            urls=(f"{UNREACHABLE}/{self.filename}",),
            sha256=self.sha256,
            filename=self.filename,
            patches=self.patches,
        )

    def override(self) -> dict[str, object]:
        """The `dependencies:` fields that build the recipe from this tarball."""
        src = self.source
        return {
            "version": self.version,
            "source": {
                "url": list(src.urls),
                "sha256": src.sha256,
                "filename": src.filename,
                "patches": [str(p) for p in src.patches],
            },
        }


def _row(line: str) -> StandIn:
    recipe, origin, version, sha256, filename, *patch = line.split("\t")
    package, _, suite = origin.partition("/")
    assert re.fullmatch(r"[0-9a-f]{64}", sha256) and suite, line
    patches = tuple(RECIPES / "stand-ins" / p for p in patch)
    return StandIn(recipe, package, suite, version, sha256, filename, patches)


def stand_ins(path: Path = LIST) -> dict[str, StandIn]:
    """recipe name -> its stand-in."""
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    return {s.recipe: s for s in map(_row, (r for r in rows if not r.startswith("#")))}


def in_mirror(mirror: Path, src: SourceSpec) -> Path | None:
    for candidate in (
        mirror / src.sha256,
        mirror / src.filename,
        mirror / src.sha256 / src.filename,
    ):
        if candidate.is_file() and sha256_file(candidate) == src.sha256:
            return candidate
    return None


def source_in_mirror(mirror: Path, dep: DependencySpec) -> SourceSpec | None:
    """The recipe's own source if the mirror has it, else its stand-in's, else None."""
    stand_in = stand_ins().get(dep.name)
    for src in (dep.source, stand_in.source if stand_in else None):
        if src is not None and in_mirror(mirror, src):
            return src
    return None


def needing_stand_ins(
    mirror: Path, deps: Iterable[DependencySpec], listed: Path = LIST
) -> set[str]:
    """The deps whose own tarball the mirror lacks but whose stand-in it holds."""
    known = stand_ins(listed)
    return {
        d.name
        for d in deps
        if d.name in known
        and in_mirror(mirror, d.source) is None
        and in_mirror(mirror, known[d.name].source) is not None
    }


def use_entry(name: str, stand_in: StandIn | None = None, indent: str = "  ") -> str:
    """A `dependencies:` list item for `use: name`, built from ``stand_in`` if given (JSON
    is YAML: the fields go in flow style, one line each)."""
    entry = f"{indent}- use: {name}\n"
    for key, value in (stand_in.override() if stand_in else {}).items():
        entry += f"{indent}  {key}: {json.dumps(value)}\n"
    return entry


def with_stand_ins(recipe_text: str, names: Iterable[str]) -> str:
    """The recipe with each `  - use: NAME` of ``names`` built from its stand-in."""
    known = stand_ins()
    for name in sorted(names):
        old = f"  - use: {name}\n"
        assert old in recipe_text, f"the recipe does not use {name}"
        recipe_text = recipe_text.replace(old, use_entry(name, known[name]))
    return recipe_text
