"""`orch audit WHEEL...`: argument parsing and exit codes (0 clean, 1 errors, 2 unreadable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from .model import CHECKS, SEVERITIES, AuditResult
from .render import render_table, to_json_document

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_UNREADABLE = 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Audit built wheels for what auditwheel never checks: exported std:: and third-party "
        "symbols, the C++ string ABI, symbol versions (listed one by one), DT_NEEDED, RPATH, "
        "RECORD and the stable ABI."
    )
    parser.add_argument(
        "wheels",
        nargs="+",
        type=Path,
        metavar="WHEEL",
        help="wheel files to audit (any architecture)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of tables"
    )
    parser.add_argument(
        "--allow-export",
        action="append",
        default=[],
        metavar="PATTERN",
        help="fnmatch pattern of a (mangled or demangled) symbol the project "
        "means to export; repeatable",
    )
    parser.add_argument(
        "--downgrade",
        action="append",
        default=[],
        metavar="CHECK=SEVERITY:REASON",
        help=f"lower a check's findings to {'/'.join(SEVERITIES[:-1])} with a "
        f"reason; checks: {', '.join(CHECKS)}; repeatable",
    )
    parser.add_argument(
        "--bundled",
        action="append",
        default=[],
        metavar="LIB",
        help="a static library the build links (zlib, zstd, ... or "
        "NAME=GLOB,GLOB for others); repeatable",
    )
    parser.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a static archive (.a) or dependency artifact (.tar.gz) the wheel was linked "
        "against: its symbols are that library's, other exports are the project's own "
        "(orch build does this by itself); repeatable",
    )


def parse_downgrade(text: str) -> tuple[str, str, str]:
    check, sep, rest = text.partition("=")
    severity, sep2, reason = rest.partition(":")
    if not sep or not sep2 or not reason.strip():
        raise ValueError(f"--downgrade {text!r}: expected CHECK=SEVERITY:REASON")
    return check.strip(), severity.strip(), reason.strip()


def run(args: argparse.Namespace) -> int:
    # the ELF readers load here, not with the parser: `orch build` builds it too
    from .archives import parse_archive_option
    from .audit import audit_wheel
    from .wheel import WheelError

    out = Console()
    try:
        downgrades = [parse_downgrade(d) for d in args.downgrade]
        linked = [parse_archive_option(a) for a in args.archive]
    except ValueError as exc:
        _complain(str(exc))
        return EXIT_UNREADABLE
    results: list[AuditResult] = []
    errors: list[tuple[str, str]] = []
    for wheel in args.wheels:
        try:
            results.append(
                audit_wheel(
                    wheel,
                    allow_exports=args.allow_export,
                    downgrade=downgrades,
                    bundled_static=args.bundled,
                    linked=linked,
                )
            )
        except WheelError as exc:
            errors.append((str(wheel), str(exc)))
        except ValueError as exc:  # an invalid --downgrade: same for every wheel
            _complain(str(exc))
            return EXIT_UNREADABLE
    _print(args.json, results, errors, out)
    if errors:
        return EXIT_UNREADABLE
    return EXIT_CLEAN if all(r.ok() for r in results) else EXIT_FINDINGS


def _complain(message: str) -> None:
    # plain stderr, never wrapped: a path in the message must stay copyable and greppable
    sys.stderr.write(f"orch audit: {message}\n")


def _print(
    as_json: bool, results: list[AuditResult], errors: list[tuple[str, str]], out: Console
) -> None:
    if as_json:
        sys.stdout.write(to_json_document(results, errors) + "\n")
    else:
        for result in results:
            render_table(result, out)
    for _wheel, message in errors:
        _complain(f"cannot audit {message}")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m orchestrator.audit.cli`) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="orch audit")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
