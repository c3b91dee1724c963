"""The checks about the wheel's promise: its platform tag and the symbol versions it needs."""

from __future__ import annotations

import re

from .context import Context, is_loader
from .elf import ElfInfo
from .external import AuditwheelShow
from .model import ERROR, INFO, WARNING, Finding
from .model import make_finding as _f
from .policy import Platform, Policy, allowed, parse_platform, policies_for, policy_for

# --- tag -------------------------------------------------------------------------------------


def check_tag(ctx: Context) -> list[Finding]:
    platforms = ctx.platforms
    findings = _wheel_file_tags(ctx) + _elf_arch(ctx)
    if all(p.family == "any" for p in platforms):
        if ctx.elfs:
            findings.append(
                _f(
                    "tag",
                    ERROR,
                    "platform tag 'any' but the wheel holds ELF files",
                    [e.path for e in ctx.elfs],
                )
            )
        return findings
    if any(p.family == "other" for p in platforms):
        findings.append(_f("tag", INFO, "not a Linux wheel: the ELF checks do not apply"))
        return findings
    if not ctx.elfs:
        findings.append(_f("tag", WARNING, "Linux platform tag but no ELF file in the wheel"))
        return findings
    claim = ctx.claim
    if claim is None:  # only linux_<arch> tags
        return [*findings, _not_portable(ctx)]
    return findings + _compare_claim(ctx, claim)


def _wheel_file_tags(ctx: Context) -> list[Finding]:
    named, listed = set(ctx.wheel.full_tags), set(ctx.wheel.wheel_file_tags)
    if not listed:
        return [_f("tag", WARNING, "the WHEEL file lists no Tag: lines")]
    if named == listed:
        return []
    items = [f"only in the file name: {t}" for t in sorted(named - listed)]
    items += [f"only in WHEEL: {t}" for t in sorted(listed - named)]
    return [_f("tag", ERROR, "the WHEEL file's tags differ from the file name's", items)]


def _elf_arch(ctx: Context) -> list[Finding]:
    tag_archs = {p.arch for p in ctx.platforms if p.arch}
    if len(tag_archs) > 1:
        return [_f("tag", ERROR, "the tags name several architectures", sorted(tag_archs))]
    if not tag_archs:
        return []
    want = _baseline(tag_archs.pop())
    wrong = [f"{e.path}: {e.arch or e.machine}" for e in ctx.elfs if e.arch != want]
    if not wrong:
        return []
    return [_f("tag", ERROR, f"ELF files not built for {want}, the tag's architecture", wrong)]


def _baseline(arch: str) -> str:
    return "x86_64" if arch.startswith("x86_64") else arch


def _not_portable(ctx: Context) -> Finding:
    computed = _computed_tag(ctx)
    hint = f"; `auditwheel repair` could make it {computed}" if computed else ""
    tags = ", ".join(ctx.wheel.platform_tags)
    return _f(
        "tag",
        ERROR,
        f"{tags} is not a portable tag (no manylinux/musllinux claim): installers on "
        f"other systems will refuse or break{hint}",
    )


def _computed_tag(ctx: Context) -> str | None:
    show = ctx.auditwheel()
    if show.overall_tag is not None:
        return show.overall_tag
    return own_computed_tag(ctx)


def _compare_claim(ctx: Context, claim: Platform) -> list[Finding]:
    show = ctx.auditwheel()
    findings: list[Finding] = []
    computed_tag = show.overall_tag
    source = "auditwheel"
    if computed_tag is None:
        computed_tag = own_computed_tag(ctx)
        source = "orch's own analysis"
        findings.append(
            _f(
                "tag",
                WARNING,
                f"auditwheel gave no answer ({show.error}); falling back to orch's own analysis",
                partial=True,
            )
        )
    if show.unsupported_isa:
        findings.append(
            _f(
                "tag",
                WARNING,
                "auditwheel: the wheel needs ISA extensions beyond the architecture's baseline",
            )
        )
    computed = parse_platform(computed_tag) if computed_tag else None
    claimed = ", ".join(ctx.wheel.platform_tags)
    if computed is None or not computed.portable or computed.version is None:
        items = _tag_evidence(ctx, show, claim)
        findings.append(
            _f(
                "tag",
                ERROR,
                f"claims {claimed} but {source} finds the wheel is not "
                f"portable at all ({computed_tag})",
                items,
            )
        )
    elif claim.version is not None and claim.version < computed.version:
        items = _tag_evidence(ctx, show, claim)
        findings.append(
            _f(
                "tag",
                ERROR,
                f"claims {claimed} but {source} computes "
                f"{computed_tag}: the wheel needs a newer libc",
                items,
            )
        )
    else:
        findings.append(_f("tag", INFO, f"claims {claimed}; {source} computes {computed_tag}"))
    return findings


def _tag_evidence(ctx: Context, show: AuditwheelShow, claim: Platform) -> list[str]:
    if show.overall_tag is None:
        return _own_evidence(ctx, claim)
    policy, exact = policy_for(claim)
    items: list[str] = []
    for lib, versions in sorted(show.versioned_symbols.items()):
        bad = [
            v
            for v in versions
            if policy is None
            or claim.version is None
            or not allowed(policy, exact, claim.version, v)
        ]
        if bad:
            items.append(f"{lib}: {', '.join(bad)}")
    items += [f"external library: {lib}" for lib in sorted(show.external_libs)]
    upgrade = show.policy_upgrades.get(claim.canonical, {})
    for lib, syms in sorted(upgrade.get("blacklisted_symbols", {}).items()):
        items.append(f"blacklisted in {lib}: {', '.join(syms)}")
    return items


def _own_evidence(ctx: Context, claim: Platform) -> list[str]:
    """Why the claim fails, by orch's own reading (when auditwheel gave no answer)."""
    policy, exact = policy_for(claim)
    bundled = ctx.bundled()
    whitelist = policy.whitelist if policy else frozenset()
    items: set[str] = set()
    for elf in ctx.elfs:
        for lib, version in elf.version_needs:
            if lib in bundled or is_loader(lib) or policy is None or claim.version is None:
                continue
            if not allowed(policy, exact, claim.version, version):
                items.add(f"{lib}: {version}")
        items.update(
            f"external library: {n}"
            for n in elf.needed
            if n not in bundled and not is_loader(n) and n not in whitelist
        )
    return sorted(items)


def own_computed_tag(ctx: Context) -> str | None:
    """The oldest policy every ELF file satisfies, by orch's own reading of the files."""
    family = ctx.claim.family if ctx.claim else "manylinux"
    arch = ctx.arch or (ctx.elfs[0].arch if ctx.elfs else None)
    if arch is None:
        return None
    bundled = ctx.bundled()
    for policy in policies_for(family, arch):
        if all(_satisfies(elf, policy.name, bundled, ctx) for elf in ctx.elfs):
            return f"{policy.name}_{arch}"
    return f"linux_{arch}"


def _satisfies(elf: ElfInfo, policy_name: str, bundled: dict[str, str], ctx: Context) -> bool:
    platform = parse_platform(f"{policy_name}_{ctx.arch or elf.arch}")
    policy, exact = policy_for(platform)
    if policy is None or platform.version is None:
        return False
    for lib, version in elf.version_needs:
        if lib in bundled or is_loader(lib):
            continue
        if not allowed(policy, exact, platform.version, version):
            return False
    external = [n for n in elf.needed if n not in bundled and not is_loader(n)]
    return all(n in policy.whitelist for n in external)


# --- symbol-versions -------------------------------------------------------------------------


def check_symbol_versions(ctx: Context) -> list[Finding]:
    if not ctx.elfs:
        return []
    claim = ctx.claim
    policy, exact = ctx.claimed_policy
    if claim is None or claim.version is None or policy is None:
        return [
            _f(
                "symbol-versions",
                INFO,
                "no manylinux/musllinux claim to check symbol versions against",
            )
        ]
    bundled = ctx.bundled()
    findings: list[Finding] = []
    for elf in ctx.elfs:
        items = _too_new(elf, policy, exact, claim.version, bundled, ctx)
        items += _blacklisted(elf, policy.blacklist)
        if items:
            findings.append(
                _f(
                    "symbol-versions",
                    ERROR,
                    f"{len(items)} required symbol(s) beyond what {claim.canonical} allows "
                    f"(checked against auditwheel's {policy.name} policy)",
                    items,
                    elf.path,
                )
            )
    return findings


def _too_new(
    elf: ElfInfo,
    policy: Policy,
    exact: bool,
    claimed: tuple[int, int],
    bundled: dict[str, str],
    ctx: Context,
) -> list[str]:
    bad: dict[tuple[str, str], list[str]] = {}
    for lib, version in elf.version_needs:
        # like auditwheel: libraries in the wheel and the loader's own versions are exempt
        if lib in bundled or is_loader(lib):
            continue
        if not allowed(policy, exact, claimed, version):
            bad[(lib, version)] = []
    for sym in elf.undefined:
        key = (sym.version_file or "", sym.version or "")
        if key in bad:
            bad[key].append(sym.name)
    items: list[str] = []
    for (lib, version), names in sorted(bad.items(), key=lambda kv: _vkey(kv[0][1])):
        if not names:
            items.append(f"(version only) {version} from {lib}")
        items += [f"{ctx.demangle(n)}@{version} ({lib})" for n in sorted(names)]
    return items


def _vkey(version: str) -> tuple[str, tuple[int, ...]]:
    namespace, _, number = version.partition("_")
    return namespace, tuple(int(x) for x in re.findall(r"\d+", number))


def _blacklisted(elf: ElfInfo, blacklist: dict[str, frozenset[str]]) -> list[str]:
    items: list[str] = []
    for lib in elf.needed:
        banned = blacklist.get(lib)
        if banned:
            items += [
                f"{s.name} ({lib}: blacklisted by the policy)"
                for s in elf.undefined
                if s.name in banned
            ]
    return items
