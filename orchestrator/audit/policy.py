"""Platform tags and the manylinux/musllinux policies, read from auditwheel's own policy data.

auditwheel ships its policies as JSON inside the `auditwheel.policy` package; reading that
data (not its Python classes) keeps orch working across auditwheel releases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_PEP600 = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)_(.+)$")
_LEGACY_RE = re.compile(r"^(manylinux1|manylinux2010|manylinux2014)_(.+)$")
_LINUX = re.compile(r"^linux_(.+)$")
_POLICY_FILES = {"manylinux": "manylinux-policy.json", "musllinux": "musllinux-policy.json"}


@dataclass(frozen=True)
class Platform:
    tag: str
    family: str  # manylinux | musllinux | linux | any | other
    version: tuple[int, int] | None  # glibc or musl version the tag promises
    arch: str | None

    @property
    def portable(self) -> bool:
        return self.family in ("manylinux", "musllinux")

    @property
    def canonical(self) -> str:
        """The PEP 600 spelling (manylinux2014_x86_64 -> manylinux_2_17_x86_64)."""
        if not self.portable or self.version is None:
            return self.tag
        return f"{self.family}_{self.version[0]}_{self.version[1]}_{self.arch}"


def parse_platform(tag: str) -> Platform:
    if m := _PEP600.match(tag):
        return Platform(tag, m[1], (int(m[2]), int(m[3])), m[4])
    if m := _LEGACY_RE.match(tag):
        return Platform(tag, "manylinux", _LEGACY[m[1]], m[2])
    if m := _LINUX.match(tag):
        return Platform(tag, "linux", None, m[1])
    if tag == "any":
        return Platform(tag, "any", None, None)
    return Platform(tag, "other", None, None)


@dataclass(frozen=True)
class Policy:
    name: str  # manylinux_2_17 (without the arch)
    family: str
    version: tuple[int, int]
    aliases: tuple[str, ...]
    symbol_versions: dict[str, frozenset[str]]  # namespace (GLIBC, GLIBCXX, ...) -> allowed
    whitelist: frozenset[str]
    blacklist: dict[str, frozenset[str]]  # library -> symbols it may not be used for


@lru_cache(maxsize=4)
def _raw_policies(family: str) -> tuple[dict[str, Any], ...]:
    text = resources.files("auditwheel.policy").joinpath(_POLICY_FILES[family]).read_text()
    return tuple(json.loads(text))


def _base_arch(arch: str) -> str:
    # auditwheel keys its data by baseline arch (x86_64_v3 wheels use the x86_64 lists)
    return "x86_64" if arch.startswith("x86_64") else arch


@lru_cache(maxsize=64)
def policies_for(family: str, arch: str) -> tuple[Policy, ...]:
    """The family's policies that exist for this arch, oldest (most permissive) first."""
    if family not in _POLICY_FILES:
        return ()
    base = _base_arch(arch)
    out: list[Policy] = []
    for raw in _raw_policies(family):
        name = str(raw["name"])
        if name == "linux" or base not in raw["symbol_versions"]:
            continue
        m = re.match(r"^\w+?_(\d+)_(\d+)$", name)
        if m is None:
            continue
        out.append(
            Policy(
                name=name,
                family=family,
                version=(int(m[1]), int(m[2])),
                aliases=tuple(raw.get("aliases", ())),
                symbol_versions={k: frozenset(v) for k, v in raw["symbol_versions"][base].items()},
                whitelist=frozenset(raw["lib_whitelist"]),
                blacklist={k: frozenset(v) for k, v in raw.get("blacklist", {}).items()},
            )
        )
    return tuple(sorted(out, key=lambda p: p.version))


def policy_for(platform: Platform) -> tuple[Policy | None, bool]:
    """The policy a tag is checked against, and whether it is an exact match.

    Tags without a policy of their own (manylinux_2_29) use the newest older one, which is
    at least as strict for every namespace but GLIBC (compared by number, see allowed()).
    """
    if not platform.portable or platform.version is None or platform.arch is None:
        return None, False
    candidates = [
        p for p in policies_for(platform.family, platform.arch) if p.version <= platform.version
    ]
    if not candidates:
        return None, False
    best = candidates[-1]
    return best, best.version == platform.version


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def split_version(version: str) -> tuple[str, str]:
    """GLIBCXX_3.4.21 -> ("GLIBCXX", "3.4.21"); GLIBC_PRIVATE -> ("GLIBC", "PRIVATE")."""
    namespace, _, number = version.partition("_")
    return namespace, number


def allowed(policy: Policy, exact: bool, claimed: tuple[int, int], version: str) -> bool:
    """Whether a required symbol version is within what the claimed tag promises."""
    namespace, number = split_version(version)
    known = policy.symbol_versions.get(namespace)  # the policy lists bare numbers: "2.17"
    if known is None:
        return True  # a namespace the policy does not govern (a bundled library's own)
    if number in known:
        return True
    if not exact and namespace == "GLIBC" and re.fullmatch(r"[\d.]+", number):
        return version_tuple(number) <= claimed
    return False


def most_permissive(platforms: list[Platform]) -> Platform | None:
    """The oldest portable tag: the promise that is hardest to keep."""
    portable = [p for p in platforms if p.portable and p.version is not None]
    return min(portable, key=lambda p: p.version or (0, 0), default=None)
