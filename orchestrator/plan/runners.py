"""Which CI runner builds each architecture: GitHub's hosted x86_64 and arm64 Linux runners
by default, overridable per architecture (`--runner aarch64=my-arm-pool`). A shard never
mixes runners, and a job is emulated only if its runner's CPU cannot run it natively."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator import archs
from orchestrator.errors import ConfigError

# GitHub-hosted labels and the CPU behind them.
HOSTED = {
    "ubuntu-latest": "x86_64",
    "ubuntu-24.04": "x86_64",
    "ubuntu-22.04": "x86_64",
    "ubuntu-24.04-arm": "aarch64",
    "ubuntu-22.04-arm": "aarch64",
}
# aarch64 runners also run armv7l natively; ppc64le and s390x have no hosted runner, so they
# go where QEMU is cheapest to set up: the x86_64 one.
DEFAULTS = {
    "x86_64": "ubuntu-latest",
    "i686": "ubuntu-latest",
    "aarch64": "ubuntu-24.04-arm",
    "armv7l": "ubuntu-24.04-arm",
    "ppc64le": "ubuntu-latest",
    "s390x": "ubuntu-latest",
}


@dataclass(frozen=True)
class Runners:
    overrides: Mapping[str, str] = field(default_factory=dict)  # arch -> label

    def label(self, arch: str) -> str:
        return self.overrides.get(arch) or DEFAULTS[arch]

    def host(self, label: str) -> str:
        """The CPU a runner has: known for hosted labels; a custom pool is taken to be
        native for the architecture(s) it was named for."""
        if label in HOSTED:
            return HOSTED[label]
        named = sorted(a for a, lab in self.overrides.items() if lab == label)
        return named[0] if named else "x86_64"

    def emulated(self, arch: str) -> bool:
        return not archs.runs_natively(arch, self.host(self.label(arch)))


def parse_runners(items: Sequence[str]) -> Runners:
    """`ARCH=LABEL` items (repeatable flag) into Runners; a clear error for anything else."""
    out: dict[str, str] = {}
    for item in items:
        arch, sep, label = item.partition("=")
        arch, label = arch.strip(), label.strip()
        if not sep or not label:
            raise ConfigError(
                f"--runner {item!r}: expected ARCH=LABEL, e.g. --runner aarch64=ubuntu-24.04-arm"
            )
        if arch not in archs.ARCHS:
            raise ConfigError(f"--runner {item!r}: {archs.not_an_arch(arch)}")
        out[arch] = label
    return Runners(out)
