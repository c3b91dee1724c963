"""The image catalog: which policy exists for which architecture, and which image runs it.

Data lives in ``images/catalog.yaml``; this module answers questions about it without
touching the engine (so `orch plan` works offline).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator import archs
from orchestrator.errors import ConfigError
from orchestrator.images.definition import (
    SourcePython,
    load_suite,
    normalize_python,
    plan_image,
    version_of,
)
from orchestrator.images.sources import SourceCheck, SourceChecks
from orchestrator.util.resources import data_dir

# PEP 600 names of the legacy aliases, both ways.
ALIASES = {
    "manylinux1": "manylinux_2_5",
    "manylinux2010": "manylinux_2_12",
    "manylinux2014": "manylinux_2_17",
}
PEP600_TO_ALIAS = {v: k for k, v in ALIASES.items()}
# Where an image comes from, besides an explicit reference (which has a '/' or a ':').
IMAGE_SOURCES = ("local", "pypa")


class NoImage(KeyError):
    """No image runs this (policy, arch); `reason` says why, in words for the plan."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PolicyInfo:
    name: str  # as the catalog keys it: manylinux2014, manylinux_2_31, musllinux_1_2
    pep600: str  # manylinux_2_17
    libc: str  # glibc | musl
    libc_version: str
    archs: tuple[str, ...]
    eol: str | None
    pythons: tuple[str, ...]
    reference: str  # with {arch}


@dataclass(frozen=True)
class LocalInfo:
    policy: str
    suite: str
    libc_version: str
    archs: tuple[str, ...]
    unserved: tuple[str, ...] = ()  # archs the suite's archive no longer serves
    withheld: Mapping[str, str] = field(default_factory=dict)  # arch -> why no image

    def pythons(self, arch: str) -> tuple[str, ...]:
        """Every CPython the suite's image definition offers ("3.9", "3.13t"), on every
        architecture: source-built ones are compiled when a job first needs them."""
        defn = load_suite(self.suite)
        return tuple(version_of(tag) for tag in defn.available())

    def unavailable(self, version: str) -> str | None:
        """Why the definition knowingly lacks CPython `version` ("3.14t"), or None."""
        defn = load_suite(self.suite)
        return defn.unavailable.get(normalize_python(version))

    def source(self, version: str) -> SourcePython | None:
        """The Debian source package CPython `version` is compiled from, or None (Debian's
        own interpreter, or not offered)."""
        return load_suite(self.suite).source_pythons.get(normalize_python(version))

    def source_check(self, version: str, checks: SourceChecks | None) -> SourceCheck | None:
        """Whether the mirror serves the source `version` is compiled from (None: not
        source-built, or nobody asked)."""
        source = self.source(version)
        return checks(source.suite, source.package) if source and checks else None


@dataclass(frozen=True)
class ImageChoice:
    """The image a job runs in, and where it comes from."""

    source: str  # "local" | "pypa" | "explicit"
    ref: str  # build image
    runtime_ref: str  # verifies in a fresh container: a runtime image, else the build image
    policy: str  # PEP 600 policy name: manylinux_2_31
    pythons: tuple[str, ...]  # what the catalog says the image ships
    libc_version: str


@dataclass(frozen=True)
class Catalog:
    pypa: Mapping[str, PolicyInfo]
    local: Mapping[str, LocalInfo]

    def known_policies(self) -> list[str]:
        names = set(self.pypa) | set(self.local) | {p.pep600 for p in self.pypa.values()}
        return sorted(names)

    def canonical(self, policy: str) -> str:
        """Any accepted spelling -> the PEP 600 name (manylinux2014 -> manylinux_2_17)."""
        if policy in ALIASES:
            return ALIASES[policy]
        if policy in self.pypa:
            return self.pypa[policy].pep600
        if policy in self.local or any(p.pep600 == policy for p in self.pypa.values()):
            return policy
        raise KeyError(policy)

    def pypa_policy(self, pep600: str) -> PolicyInfo | None:
        for info in self.pypa.values():
            if info.pep600 == pep600:
                return info
        return None

    def archs_for(self, pep600: str) -> tuple[str, ...]:
        found: list[str] = []
        pypa = self.pypa_policy(pep600)
        if pypa:
            found += pypa.archs
        if pep600 in self.local:
            found += self.local[pep600].archs
        return tuple(a for a in archs.ARCHS if a in found)

    def choose(
        self,
        pep600: str,
        arch: str,
        preference: str | None = None,
        pythons: tuple[str, ...] | None = None,
    ) -> ImageChoice:
        """The image for (policy, arch); preference: 'local', 'pypa' or an explicit ref.

        A local image carries Debian's interpreter plus exactly `pythons` (versions), or
        every available one when None; its tag names that set, since each source-built
        interpreter is added on demand. Raises NoImage (a KeyError) with the reason when no
        image exists for it. Every choice names the image that verifies its wheels: a local
        runtime image, else a fresh container of the build image.
        """
        local = self.local.get(pep600)
        pypa = self.pypa_policy(pep600)
        if preference not in (None, "local", "pypa"):
            libc = local.libc_version if local else pypa.libc_version if pypa else ""
            pythons = local.pythons(arch) if local else pypa.pythons if pypa else ()
            ref = str(preference)
            return ImageChoice("explicit", ref, ref, pep600, pythons, libc)
        if local and arch in local.archs and preference != "pypa":
            offered = local.pythons(arch)
            chosen = tuple(p for p in offered if pythons is None or p in pythons)
            image = plan_image(arch, local.suite, chosen)  # its tag, from the definition files
            return ImageChoice(
                "local",
                image.ref("build"),
                image.ref("runtime"),
                pep600,
                offered if pythons is None else chosen,
                local.libc_version,
            )
        if pypa and arch in pypa.archs and preference != "local":
            ref = pypa.reference.format(arch=arch)
            return ImageChoice("pypa", ref, ref, pep600, pypa.pythons, pypa.libc_version)
        raise NoImage(self._no_image_reason(pep600, arch, preference))

    def missing_python(
        self,
        pep600: str,
        arch: str,
        version: str,
        planned: Sequence[str] = (),
        checks: SourceChecks | None = None,
    ) -> str:
        """What to add to "the local image has no CPython X": why the definition lacks it,
        and which other local family carries it (the fix, unless `planned` has it), or ""."""
        local = self.local.get(pep600)
        why = local.unavailable(version) if local else None
        others = [
            p
            for p, info in self.local.items()
            if p != pep600 and arch in info.archs and self.offers(p, arch, version, checks)
        ]
        text = f": {why}" if why else ""
        built = [p for p in others if p in planned]
        if built:
            text += f"; built in the local {built[0]} image instead"
        elif others:
            text += (
                f"; the local {others[0]} images carry CPython {version} "
                f"({self.local[others[0]].suite}): add {others[0]} to platforms"
            )
        return text

    def offers(
        self, pep600: str, arch: str, version: str, checks: SourceChecks | None = None
    ) -> bool:
        """The local family lists CPython `version`, and its source is not known unserved."""
        info = self.local[pep600]
        if version not in info.pythons(arch):
            return False
        check = info.source_check(version, checks)
        return check is None or not check.excludes

    def _no_image_reason(self, pep600: str, arch: str, preference: str | None) -> str:
        local = self.local.get(pep600)
        name = PEP600_TO_ALIAS.get(pep600, pep600)
        if local and arch in local.withheld and preference != "pypa":
            return f"no local {pep600} {arch} image: {local.withheld[arch]}"
        if local and arch in local.unserved and preference != "pypa":
            others = [p for p, info in self.local.items() if arch in info.archs]
            fix = f"; use platforms: [{others[0]}]" if others else ""
            return (
                f"local {pep600} images are built from Debian {local.suite}, whose archive "
                f"no longer serves {arch}{fix}"
            )
        if preference in IMAGE_SOURCES:
            return f"{name} has no {preference} {arch} image"
        return f"{name} has no {arch} image"


@functools.cache
def load() -> Catalog:
    raw: dict[str, Any] = yaml.safe_load((data_dir("images") / "catalog.yaml").read_text())
    pypa = {
        name: PolicyInfo(
            name=name,
            pep600=str(v["pep600"]),
            libc=str(v["libc"]),
            libc_version=str(v["libc_version"]),
            archs=tuple(v["archs"]),
            eol=v.get("eol"),
            pythons=tuple(str(p) for p in v["pythons"]),
            reference=str(v["reference"]),
        )
        for name, v in raw["pypa"].items()
    }
    local = {
        name: LocalInfo(
            policy=name,
            suite=str(v["suite"]),
            libc_version=str(v["libc_version"]),
            archs=tuple(v["archs"]),
            unserved=tuple(v.get("unserved", ())),
            withheld={str(a): str(why) for a, why in (v.get("withheld") or {}).items()},
        )
        for name, v in raw["local"].items()
    }
    return Catalog(pypa=pypa, local=local)


def newer_local_glibc(policy: str, image_source: str) -> tuple[int, int] | None:
    """The local image's glibc when it is newer than the manylinux `policy` it repairs to
    (forky: 2.43 for manylinux_2_39), else None."""
    info = load().local.get(policy) if image_source == "local" else None
    parts = policy.split("_")
    if info is None or len(parts) != 3 or parts[0] != "manylinux":
        return None
    have = tuple(int(x) for x in info.libc_version.split(".")[:2])
    newer = have > (int(parts[1]), int(parts[2])) and len(have) == 2
    return (have[0], have[1]) if newer else None


def policy_error(policy: str, where: str, field: str) -> ConfigError:
    import difflib

    known = load().known_policies()
    hint = difflib.get_close_matches(policy, known, n=1)
    did = f" (did you mean '{hint[0]}'?)" if hint else ""
    return ConfigError(
        f"{where}: {field}: '{policy}' is not a known policy{did}; known: {', '.join(known)}"
    )
