"""Everything the checks share about one wheel, computed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .archives import LinkedLibrary
from .elf import DynSymbol, ElfInfo
from .external import AuditwheelShow, run_auditwheel_show
from .policy import Platform, Policy, most_permissive, parse_platform, policies_for, policy_for
from .symbols import KNOWN_LIBS, Demangler, StaticLib, allowed_export, find_known, match_lib
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
    linked: tuple[LinkedLibrary, ...] = ()  # the job's dependency archives, by fact
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
        """Libraries recognised by name: declared ones first (a symbol is attributed to what
        the recipe says it links), never one whose archives are known (facts win)."""
        by_fact = {lib.name.lower() for lib in self.linked}
        by_fact |= {known.name.lower() for lib in self.linked if (known := find_known(lib.name))}
        return tuple(
            lib for lib in (*self.declared, *KNOWN_LIBS) if lib.name.lower() not in by_fact
        )

    def owner(self, symbol: str) -> tuple[str, str] | None:
        """(library, how we know) for a symbol some static library defines, else None."""
        for linked in self.linked:
            if symbol in linked.symbols:
                return linked.name, f"defined in {', '.join(linked.archives)}"
        lib = match_lib(symbol, self.static_libs)
        if lib is None:
            return None
        declared = any(d.name == lib.name for d in self.declared)
        return lib.name, "declared" if declared else "matched by name"

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
