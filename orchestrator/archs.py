"""The six Linux architectures of the manylinux world and their names in each tool."""

from __future__ import annotations

import difflib
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # the wheel tag's name: x86_64, i686, aarch64, ppc64le, s390x, armv7l
    debian: str  # debootstrap/dpkg name
    oci: str  # docker platform: linux/<oci>
    qemu: str  # binfmt handler name: /proc/sys/fs/binfmt_misc/qemu-<qemu>
    triplet: str  # GNU triplet of Debian's toolchain
    bits: int

    @property
    def platform(self) -> str:
        return f"linux/{self.oci}"


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("x86_64", "amd64", "amd64", "x86_64", "x86_64-linux-gnu", 64),
        Arch("i686", "i386", "386", "i386", "i386-linux-gnu", 32),
        Arch("aarch64", "arm64", "arm64", "aarch64", "aarch64-linux-gnu", 64),
        Arch("ppc64le", "ppc64el", "ppc64le", "ppc64le", "powerpc64le-linux-gnu", 64),
        Arch("s390x", "s390x", "s390x", "s390x", "s390x-linux-gnu", 64),
        Arch("armv7l", "armhf", "arm/v7", "arm", "arm-linux-gnueabihf", 32),
    )
}


def not_an_arch(name: str) -> str:
    """Why ``name`` is refused, with the nearest known name and the full list."""
    hint = difflib.get_close_matches(name, list(ARCHS), n=1)
    did = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"'{name}' is not a known architecture{did}; known: {', '.join(ARCHS)}"


# Which architectures a host CPU runs without emulation (32-bit personalities included).
NATIVE_FAMILY = {
    "x86_64": ("x86_64", "i686"),
    "aarch64": ("aarch64", "armv7l"),
    "ppc64le": ("ppc64le",),
    "s390x": ("s390x",),
    "armv7l": ("armv7l",),
    "i686": ("i686",),
}


def get(name: str) -> Arch:
    return ARCHS[name]


def host_arch() -> str:
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64", "armv8l": "armv7l"}.get(machine, machine)


def runs_natively(name: str, host: str | None = None) -> bool:
    return name in NATIVE_FAMILY.get(host or host_arch(), (host or host_arch(),))


def personality(name: str) -> tuple[str, ...]:
    """Command prefix for execs: 32-bit userlands run under a 32-bit personality so that
    `uname -m` (configure, cmake, pip) agrees with the interpreter, as the pypa images do
    in their entrypoint (which `docker exec` bypasses)."""
    return ("linux32",) if ARCHS[name].bits == 32 else ()
