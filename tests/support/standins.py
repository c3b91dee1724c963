"""Sources for library recipes on a machine that cannot reach upstream: a mirror
directory (files named by sha256 or filename, as `mirrors: [{directory: ...}]`) holding
the recipes' own tarballs or, where Debian repacks them, the stand-ins listed in
recipes/stand-ins.tsv (recipes/README.md says how each differs)."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.recipe.model import DependencySpec, SourceSpec
from orchestrator.util.hashing import sha256_file
from tests.support.run import ROOT

RECIPES = ROOT / "recipes"


def stand_ins() -> dict[str, SourceSpec]:
    """recipe name -> the stand-in source (sha256 and file name; no URL)."""
    out: dict[str, SourceSpec] = {}
    for line in (RECIPES / "stand-ins.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, sha256, filename, *patch = line.split("\t")
            patches = tuple(RECIPES / "stand-ins" / p for p in patch)
            out[name] = SourceSpec(urls=(), sha256=sha256, filename=filename, patches=patches)
    return out


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
    for src in (dep.source, stand_ins().get(dep.name)):
        if src is not None and in_mirror(mirror, src):
            return src
    return None


def use_entry(dep: DependencySpec, mirror: Path, indent: str = "  ") -> str:
    """`- use: NAME`, its source replaced by the stand-in when that is what the mirror
    holds (the URLs stay the recipe's: a mirror is consulted first, and it has the file)."""
    src = source_in_mirror(mirror, dep)
    if src is None or src == dep.source:
        return f"{indent}- use: {dep.name}\n"
    urls = ", ".join(f"'{u}'" for u in dep.source.urls)
    patches = ", ".join(f"'{p}'" for p in src.patches)
    return (
        f"{indent}- use: {dep.name}\n"
        f"{indent}  source: {{url: [{urls}], sha256: '{src.sha256}', "
        f"filename: '{src.filename}', patches: [{patches}]}}\n"
    )


def with_stand_ins(recipe_text: str, specs: dict[str, DependencySpec], mirror: Path) -> str:
    """An orch.yaml's `  - use: NAME` lines, each given its stand-in source where needed."""
    return re.sub(
        r"^  - use: (\S+)\n",
        lambda m: use_entry(specs[m.group(1)], mirror),
        recipe_text,
        flags=re.M,
    )
