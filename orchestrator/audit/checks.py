"""The audit's checks on symbols, libraries and files, and the registry of all checks.

Each check takes the shared Context and returns its findings."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

from .context import Context, is_loader
from .elf import DynSymbol, ElfInfo
from .model import ERROR, INFO, WARNING, Finding
from .model import make_finding as _f
from .record import check_record
from .symbols import find_known, is_std_symbol, uses_new_abi, uses_old_abi
from .tagchecks import check_symbol_versions, check_tag

Check = Callable[[Context], list[Finding]]
_LIBPYTHON = re.compile(r"^libpython\d+\.\d+[a-z]*\.so(\.[\d.]+)?$")


# --- exported-std ----------------------------------------------------------------------------


def check_exported_std(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for elf in ctx.elfs:
        leaked = [s for s in ctx.unwanted_exports(elf) if is_std_symbol(s.name)]
        if not leaked:
            continue
        weak = sum(1 for s in leaked if s.bind in ("weak", "unique"))
        findings.append(
            _f(
                "exported-std",
                ERROR,
                f"exports {len(leaked)} C++ standard-library symbol(s) ({weak} weak/unique): another "
                "library loaded into the same process may bind to these copies (ARROW-5130); build "
                "with -fvisibility=hidden -fvisibility-inlines-hidden and a version script",
                [ctx.describe(s) for s in sorted(leaked, key=lambda s: s.name)],
                elf.path,
            )
        )
    return findings


# --- exported-static-libs --------------------------------------------------------------------


def check_exported_static_libs(ctx: Context) -> list[Finding]:
    findings = [_f("exported-static-libs", INFO, note) for note in ctx.declared_notes]
    for elf in ctx.elfs:
        groups: dict[str, list[DynSymbol]] = {}
        how: dict[str, str] = {}
        for sym in ctx.unwanted_exports(elf):
            if is_std_symbol(sym.name):
                continue
            owner = ctx.owner(sym.name)
            if owner is not None and not _is_that_library(elf, owner[0]):
                groups.setdefault(owner[0], []).append(sym)
                how[owner[0]] = owner[1]
        if groups:
            findings.append(_static_finding(ctx, elf, groups, how))
    return findings


def _static_finding(
    ctx: Context, elf: ElfInfo, groups: dict[str, list[DynSymbol]], how: dict[str, str]
) -> Finding:
    libs = ", ".join(f"{n} ({how[n]})" for n in sorted(groups))
    items = [
        f"{name}: {ctx.describe(s)}"
        for name in sorted(groups)
        for s in sorted(groups[name], key=lambda s: s.name)
    ]
    return _f(
        "exported-static-libs",
        ERROR,
        f"exports {len(items)} symbol(s) of statically linked {libs}: another wheel with a "
        "different version of the library would clash; link with "
        "-Wl,--exclude-libs,ALL or hide them with a version script",
        items,
        elf.path,
    )


def _is_that_library(elf: ElfInfo, name: str) -> bool:
    """A bundled shared copy (libz-1a2b3c4d.so.1) exports its API on purpose."""
    known = find_known(name)
    names = (name, *(known.aliases if known else ()))
    stems = {n.lower().removeprefix("lib") for n in names}
    for name in (PurePosixPath(elf.path).name, elf.soname or ""):
        base = name.lower().removeprefix("lib")
        if any(re.match(rf"^{re.escape(s)}(?:[-._\d]|$)", base) for s in stems):
            return True
    return False


# --- exported-own ----------------------------------------------------------------------------


def check_exported_own(ctx: Context) -> list[Finding]:
    """An extension module's own global functions beyond its PyInit_: harmless alone, but
    they can bind to (or be bound by) another extension loaded with RTLD_GLOBAL."""
    findings: list[Finding] = []
    for elf in ctx.elfs:
        if not _is_extension_module(elf):
            continue
        own = [
            s
            for s in ctx.unwanted_exports(elf)
            if not is_std_symbol(s.name) and ctx.owner(s.name) is None
        ]
        if own:
            findings.append(_own_finding(ctx, elf, own))
    return findings


def _is_extension_module(elf: ElfInfo) -> bool:
    """Extensions export their entry point; grafted or shipped libraries export an API."""
    return any(s.name.startswith(("PyInit_", "PyModExport_")) for s in elf.exported)


def _own_finding(ctx: Context, elf: ElfInfo, own: list[DynSymbol]) -> Finding:
    init = next(s.name for s in elf.exported if s.name.startswith(("PyInit_", "PyModExport_")))
    return _f(
        "exported-own",
        WARNING,
        f"exports {len(own)} of the project's own symbol(s) besides {init}: they can clash with "
        "another extension's symbols of the same name; link with a version script "
        f"(-Wl,--version-script=exports.map, exports.map: '{{ global: {init}; local: *; }};') "
        "or build with -fvisibility=hidden; allow intended ones with audit.allow-exports",
        [ctx.describe(s) for s in sorted(own, key=lambda s: s.name)],
        elf.path,
    )


# --- cxx11-abi -------------------------------------------------------------------------------


def check_cxx11_abi(ctx: Context) -> list[Finding]:
    rows: list[str] = []
    new_exports: list[str] = []
    totals = [0, 0]  # new, old
    for elf in ctx.elfs:
        counts = _abi_counts(ctx, elf)
        if not any(counts):
            continue
        exp_new, exp_old, req_new, req_old = counts
        totals[0] += exp_new + req_new
        totals[1] += exp_old + req_old
        rows.append(
            f"{elf.path}: exported new={exp_new} old={exp_old}; "
            f"required new={req_new} old={req_old}"
        )
        new_exports += [
            f"{elf.path}: {ctx.describe(s)}" for s in _interface(elf) if uses_new_abi(s.name)
        ]
    if not rows:
        return []
    findings = [_f("cxx11-abi", INFO, f"C++ string ABI in use: {_abi_name(*totals)}", rows)]
    claim = ctx.claim
    if (
        new_exports
        and claim is not None
        and claim.family == "manylinux"
        and claim.version is not None
        and claim.version <= (2, 17)
    ):
        findings.append(
            _f(
                "cxx11-abi",
                WARNING,
                f"{claim.canonical} builds use devtoolset, which forces _GLIBCXX_USE_CXX11_ABI=0, "
                "but this wheel's exported interface uses the new (std::__cxx11) ABI: extensions "
                "built against it there will fail with undefined symbols",
                new_exports,
            )
        )
    return findings


def _abi_counts(ctx: Context, elf: ElfInfo) -> tuple[int, int, int, int]:
    exported = _interface(elf)
    ctx.demangle.prime(s.name for s in exported)
    required = [s for s in elf.undefined if s.name.startswith("_Z")]
    ctx.demangle.prime(s.name for s in required)

    def count(syms: list[DynSymbol]) -> tuple[int, int]:
        new = sum(1 for s in syms if uses_new_abi(s.name))
        old = sum(1 for s in syms if uses_old_abi(s.name, ctx.demangle(s.name)))
        return new, old

    return (*count(exported), *count(required))


def _interface(elf: ElfInfo) -> list[DynSymbol]:
    """What other code links against: every export (allowlisted ones above all), minus the
    std:: copies that exported-std already reports."""
    return [s for s in elf.exported if not is_std_symbol(s.name)]


def _abi_name(new: int, old: int) -> str:
    if new and old:
        return f"mixed ({new} new-ABI, {old} old-ABI symbol references)"
    if new:
        return f"new (_GLIBCXX_USE_CXX11_ABI=1; {new} std::__cxx11 references)"
    if old:
        return f"old (_GLIBCXX_USE_CXX11_ABI=0; {old} pre-C++11 std::string references)"
    return "no std::string or std::list in the interface"


# --- needed ----------------------------------------------------------------------------------


def check_needed(ctx: Context) -> list[Finding]:
    bundled = ctx.bundled()
    whitelist = ctx.whitelist()
    findings: list[Finding] = []
    for elf in ctx.elfs:
        bad, unreachable, homegrown = _classify_needed(ctx, elf, bundled, whitelist)
        if bad:
            findings.append(
                _f(
                    "needed",
                    ERROR,
                    "DT_NEEDED libraries neither in the policy's whitelist nor in the wheel",
                    bad,
                    elf.path,
                )
            )
        if unreachable:
            findings.append(
                _f(
                    "needed",
                    WARNING,
                    "bundled libraries the loader will not find through this file's RPATH/RUNPATH",
                    unreachable,
                    elf.path,
                )
            )
        if homegrown:
            findings.append(
                _f(
                    "needed",
                    INFO,
                    "libraries bundled by the build itself (not renamed by auditwheel): their "
                    "SONAMEs can clash with another copy loaded into the process",
                    homegrown,
                    elf.path,
                )
            )
    return findings


def _classify_needed(
    ctx: Context, elf: ElfInfo, bundled: dict[str, str], whitelist: frozenset[str]
) -> tuple[list[str], list[str], list[str]]:
    bad: list[str] = []
    unreachable: list[str] = []
    homegrown: list[str] = []
    for name in elf.needed:
        if _LIBPYTHON.match(name):
            bad.append(
                f"{name} (extensions must not link libpython: the manylinux "
                "interpreters have no shared libpython)"
            )
        elif name in bundled:
            where = bundled[name]
            if not _reachable(elf, where):
                unreachable.append(f"{name} -> {where}")
            if not _grafted(where, ctx):
                homegrown.append(f"{name} -> {where}")
        elif name not in whitelist and not is_loader(name):
            bad.append(name)
    return bad, unreachable, homegrown


def _reachable(elf: ElfInfo, target: str) -> bool:
    target_dir = str(PurePosixPath(target).parent)
    for entry in (*elf.rpath, *elf.runpath):
        resolved = _resolve_origin(elf.path, entry)
        if resolved is not None and resolved == target_dir:
            return True
    return False


def _grafted(path: str, ctx: Context) -> bool:
    in_libs = path.startswith(ctx.wheel.libs_dir + "/")
    return in_libs and bool(re.search(r"-[0-9a-f]{8}\.so", PurePosixPath(path).name))


def _resolve_origin(elf_path: str, entry: str) -> str | None:
    """Turn $ORIGIN/../x.libs into a directory inside the wheel ('..' if it leaves it)."""
    m = re.match(r"^\$(?:ORIGIN|\{ORIGIN\})(/.*)?$", entry)
    if m is None:
        return None
    parts = list(PurePosixPath(elf_path).parent.parts)
    for part in (m[1] or "").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return ".."
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) if parts else "."


# --- rpath -----------------------------------------------------------------------------------


def check_rpath(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for elf in ctx.elfs:
        entries = [("RPATH", e) for e in elf.rpath] + [("RUNPATH", e) for e in elf.runpath]
        bad = [f"{kind} {e}" for kind, e in entries if _resolve_origin(elf.path, e) is None]
        outside = [f"{kind} {e}" for kind, e in entries if _resolve_origin(elf.path, e) == ".."]
        if bad:
            findings.append(
                _f(
                    "rpath",
                    ERROR,
                    "search paths not relative to $ORIGIN: they point at the build machine (or at "
                    "the current directory) and may load a stranger's library",
                    bad,
                    elf.path,
                )
            )
        if outside:
            findings.append(
                _f(
                    "rpath",
                    WARNING,
                    "$ORIGIN-relative search paths that leave the installed wheel",
                    outside,
                    elf.path,
                )
            )
    return findings


# --- abi3 ------------------------------------------------------------------------------------


def check_abi3(ctx: Context) -> list[Finding]:
    if "abi3" not in ctx.wheel.abi_tags:
        return []
    from .external import abi3audit_available, run_abi3audit

    if not abi3audit_available():
        return [
            _f(
                "abi3",
                WARNING,
                "abi3 wheel, but abi3audit is not installed: stable-ABI check skipped",
                partial=True,
            )
        ]
    report = run_abi3audit(ctx.wheel.path)
    if report.error is not None:
        return [_f("abi3", WARNING, f"abi3audit failed: {report.error}", partial=True)]
    findings: list[Finding] = []
    for obj in report.objects:
        if obj.non_abi3_symbols:
            findings.append(
                _f(
                    "abi3",
                    ERROR,
                    f"uses {len(obj.non_abi3_symbols)} symbol(s) outside the stable ABI",
                    sorted(obj.non_abi3_symbols),
                    obj.name,
                )
            )
        if obj.future_symbols:
            items = [f"{s} (abi3 since {v})" for s, v in sorted(obj.future_symbols.items())]
            findings.append(
                _f(
                    "abi3",
                    ERROR,
                    f"claims abi3 {obj.baseline} but needs {obj.computed}",
                    items,
                    obj.name,
                )
            )
    if not findings:
        names = ", ".join(o.name for o in report.objects) or "no extension found"
        findings.append(_f("abi3", INFO, f"abi3audit: stable ABI respected ({names})"))
    return findings


# --- registry --------------------------------------------------------------------------------


def check_record_findings(ctx: Context) -> list[Finding]:
    return check_record(ctx.wheel)


def check_elf_errors(ctx: Context) -> list[Finding]:
    return (
        [_f("tag", WARNING, "files that look like ELF but could not be parsed", ctx.elf_errors)]
        if ctx.elf_errors
        else []
    )


CHECK_FUNCS: dict[str, Check] = {
    "tag": lambda ctx: check_elf_errors(ctx) + check_tag(ctx),
    "symbol-versions": check_symbol_versions,
    "exported-std": check_exported_std,
    "exported-static-libs": check_exported_static_libs,
    "exported-own": check_exported_own,
    "cxx11-abi": check_cxx11_abi,
    "needed": check_needed,
    "rpath": check_rpath,
    "record": check_record_findings,
    "abi3": check_abi3,
}
