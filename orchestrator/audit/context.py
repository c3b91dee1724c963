"""Everything the checks share about one wheel, computed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .elf import DynSymbol, ElfInfo
from .external import AuditwheelShow, run_auditwheel_show
from .policy import Platform, Policy, most_permissive, parse_platform, policies_for, policy_for
from .symbols import KNOWN_LIBS, Demangler, StaticLib, allowed_export
from .wheel import Wheel

# The dynamic loader: every ELF may need it, no policy lists it, it is never bundled.
LOADER_PREFIXES = ("ld-linux", "ld64.so.", "ld.so.", "ld-musl-")


@dataclass
class Context:
    wheel: Wheel
    elfs: list[ElfInfo]
    elf_errors: list[str]
    allow_exports: tuple[str, ...] = ()
    declared: tuple[StaticLib, ...] = ()
    declared_notes: tuple[str, ...] = ()
    demangle: Demangler = field(default_factory=Demangler)
    _show: AuditwheelShow | None = None

    @property
    def platforms(self) -> list[Platform]:
        return [parse_platform(t) for t in self.wheel.platform_tags]

    @property
    def claim(self) -> Platform | None:
        return most_permissive(self.platforms)

    @property
    def arch(self) -> str | None:
        archs = {p.arch for p in self.platforms if p.arch}
        return archs.pop() if len(archs) == 1 else None

    @property
    def claimed_policy(self) -> tuple[Policy | None, bool]:
        claim = self.claim
        return (None, False) if claim is None else policy_for(claim)

    @property
    def static_libs(self) -> tuple[StaticLib, ...]:
        # declared libraries first, so a symbol is attributed to what the recipe says it links
        return (*self.declared, *KNOWN_LIBS)

    def auditwheel(self) -> AuditwheelShow:
        if self._show is None:
            self._show = run_auditwheel_show(self.wheel.path)
        return self._show

    def bundled(self) -> dict[str, str]:
        """Library names (file names and SONAMEs) the wheel itself provides -> wheel path."""
        out: dict[str, str] = {}
        for elf in self.elfs:
            out.setdefault(PurePosixPath(elf.path).name, elf.path)
            if elf.soname:
                out.setdefault(elf.soname, elf.path)
        return out

    def whitelist(self) -> frozenset[str]:
        """System libraries an ELF may need: the claimed policy's, else the most lenient."""
        policy, _ = self.claimed_policy
        if policy is not None:
            return policy.whitelist
        claim_family = self.claim.family if self.claim else "manylinux"
        family = "musllinux" if claim_family == "musllinux" else "manylinux"
        known = policies_for(family, self.arch or "x86_64")
        return known[-1].whitelist if known else frozenset()

    def unwanted_exports(self, elf: ElfInfo) -> list[DynSymbol]:
        """Exported symbols not covered by the project's allowlist or module entry points."""
        syms = elf.exported
        self.demangle.prime(s.name for s in syms)
        return [
            s for s in syms if not allowed_export(s.name, self.demangle(s.name), self.allow_exports)
        ]

    def describe(self, sym: DynSymbol) -> str:
        """nm-style letter, readable name, then the mangled one (what allowlists match)."""
        shown = self.demangle(sym.name)
        if shown == sym.name:
            return f"{sym.nm_letter} {sym.name}"
        return f"{sym.nm_letter} {shown}  [{sym.name}]"


def is_loader(name: str) -> bool:
    return name.startswith(LOADER_PREFIXES)
