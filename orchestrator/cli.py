"""The `orch` command line: parses arguments and calls the stage modules; no logic here.

Exit codes: 0 success; 1 a job or check failed; 2 configuration error (recipe or command
line; nothing was started); 3 environment problem (engine, image, emulation); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orchestrator import __version__
from orchestrator.errors import EXIT_BUILD_FAILED, EXIT_INTERRUPTED, EXIT_OK, ConfigError, OrchError

EPILOG = (
    "exit codes: 0 ok, 1 build/check failed, 2 configuration error, 3 environment problem, "
    "130 interrupted"
)


def _recipe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--file",
        default="orch.yaml",
        metavar="PATH",
        help="the recipe (default: ./orch.yaml); a directory means DIR/orch.yaml",
    )


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="run only this job id or glob (repeatable), e.g. cp311-manylinux_2_31_x86_64",
    )
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N (whole image/arch groups)")
    p.add_argument("--arch", action="append", default=[], help="restrict to these architectures")
    _runner_arg(p)


def _runner_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runner",
        action="append",
        default=[],
        metavar="ARCH=LABEL",
        help="CI runner for an architecture's shards (repeatable; defaults: x86_64, i686, "
        "ppc64le, s390x on ubuntu-latest; aarch64, armv7l on ubuntu-24.04-arm); give "
        "`orch build --shard` the same overrides as `orch matrix`",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orch",
        description="Build, repair and verify Python wheels with native code in manylinux containers.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="build, repair, verify and audit wheels (the main job)",
        description="Build every job of the recipe's matrix in fresh containers, "
        "repair with auditwheel, verify in clean containers, audit, and land the "
        "wheels atomically in the output directory.",
        epilog=EPILOG,
    )
    _recipe_arg(b)
    _selection_args(b)
    b.add_argument(
        "-o", "--output-dir", default="wheelhouse", help="the wheelhouse (default: ./wheelhouse)"
    )
    b.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 2,
        help="jobs run at once (default: number of CPUs)",
    )
    b.add_argument(
        "--keep-container",
        action="store_true",
        help="keep a failed job's container and print how to enter it",
    )
    b.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep wheels that fail verification in OUTPUT/.orch/failed",
    )
    b.add_argument(
        "--emulation",
        choices=["auto", "accelerated", "plain"],
        default=os.environ.get("ORCH_EMULATION", "auto"),
        help="emulated architectures: compile with a native cross compiler where it applies, "
        "else plain QEMU with a message (auto, the default; env ORCH_EMULATION), always or "
        "fail (accelerated), or compile under QEMU (plain)",
    )
    b.add_argument("--no-verify", action="store_true", help="skip clean-container verification")
    b.add_argument("--no-audit", action="store_true", help="skip orch audit of each wheel")
    b.add_argument(
        "--no-build-images",
        action="store_true",
        help="fail instead of building missing local images",
    )
    b.add_argument(
        "--report", type=Path, help="report JSON path (default: OUTPUT/.orch/report.json)"
    )
    b.add_argument(
        "--plain", action="store_true", help="plain progress lines instead of a live table"
    )

    p = sub.add_parser(
        "plan",
        help="show the job matrix (table or --json)",
        description="Show the jobs the recipe asks for, their images, and why "
        "combinations were excluded. Needs no engine.",
        epilog=EPILOG,
    )
    _recipe_arg(p)
    _selection_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    m = sub.add_parser(
        "matrix",
        help="print a GitHub Actions matrix (JSON) of shards",
        description="Group jobs by image and architecture into at most "
        '--max-shards shards and print {"include": [...]} for strategy.matrix.',
    )
    _recipe_arg(m)
    m.add_argument("--max-shards", type=int, default=8)
    _runner_arg(m)

    i = sub.add_parser(
        "images",
        help="list images or build the local ones",
        description="Without a subcommand: list the catalog and what is present.",
    )
    isub = i.add_subparsers(dest="images_command", metavar="SUBCOMMAND")
    bl = isub.add_parser(
        "build-local", help="build manylinux-compatible images with debootstrap (no registry)"
    )
    bl.add_argument("--arch", action="append", default=[], help="architecture(s) (default: x86_64)")
    bl.add_argument(
        "--suite", default="bullseye", help="Debian suite (default: bullseye -> manylinux_2_31)"
    )
    bl.add_argument(
        "--rebuild", action="store_true", help="rebuild even if the definition is unchanged"
    )
    isub.add_parser("list", help="list the catalog and the images present")
    isub.add_parser("prune", help="remove local images whose definition has changed")

    d = sub.add_parser(
        "doctor",
        help="check the engine, emulation, disk and images",
        description="Report whether this host can run orch's jobs, and how to fix what is missing.",
    )
    d.add_argument("--json", action="store_true")

    sub.add_parser(
        "setup-emulation",
        help="register QEMU binfmt handlers (root)",
        description="Register binfmt_misc handlers with the F flag from the host's "
        "qemu-user-static (update-binfmts).",
    )

    sub.add_parser("clean", help="remove containers orch left behind (e.g. --keep-container)")

    a = sub.add_parser(
        "audit",
        help="audit wheels: symbols, versions, exports, RPATHs, RECORD",
        description="Checks auditwheel does not do. Exit 1 if an error-level check fails.",
    )
    try:
        from orchestrator.audit.cli import configure_parser
    except ImportError:  # pragma: no cover - during development only
        a.add_argument("wheels", nargs="+")
    else:
        configure_parser(a)

    c = sub.add_parser(
        "cache",
        help="the dependency cache: list, export, import, push, pull",
        description="Built dependencies are cached by a content key under "
        "$ORCH_CACHE_DIR (default: the user cache dir). Move them between machines "
        "with export/import (a directory or .tar/.tar.gz) or an OCI registry.",
    )
    csub = c.add_subparsers(dest="cache_command", required=True, metavar="SUBCOMMAND")
    csub.add_parser("list", help="list cached dependency builds")
    ce = csub.add_parser("export", help="export entries to a directory or a .tar/.tar.gz")
    ce.add_argument("dest", type=Path)
    ce.add_argument("--key", action="append", default=None, help="only these keys")
    ci = csub.add_parser("import", help="import (and verify) entries from a directory or tarball")
    ci.add_argument("source", type=Path)
    for name in ("push", "pull"):
        cp = csub.add_parser(name, help=f"{name} entries to/from an OCI registry")
        cp.add_argument("registry", help="e.g. 127.0.0.1:5000 or https://registry.example")
        cp.add_argument("--repository", default="orch/deps")
        cp.add_argument("--key", action="append", default=[], help="keys (push: default all)")

    r = sub.add_parser(
        "report",
        help="merge run reports; write JUnit, Markdown, HTML, annotations",
        description="Merge the reports of shards into one and render it as JUnit XML, "
        "Markdown (job summary) or a self-contained HTML page.",
    )
    from orchestrator.report.cli import configure_parser as configure_report

    configure_report(r)

    s = sub.add_parser("schema", help="print the recipe JSON Schema (for editors)")
    s.add_argument("--path", action="store_true", help="print the schema file's path instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return int(COMMANDS[args.command](args, console))
    except OrchError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED


# --- commands -------------------------------------------------------------------------


def _recipe_path(arg: str) -> Path:
    path = Path(arg)
    return path / "orch.yaml" if path.is_dir() else path


def _load_plan(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from orchestrator.plan.jobs import make_plan
    from orchestrator.plan.runners import parse_runners
    from orchestrator.recipe import load_recipe

    recipe = load_recipe(_recipe_path(args.file))
    plan = make_plan(recipe)
    if getattr(args, "arch", None):
        plan = plan.select([f"*_{a}" for a in args.arch])
    plan = plan.select(getattr(args, "only", []) or [])
    if getattr(args, "shard", None):
        k, n = _parse_shard(args.shard)
        plan = plan.shard(k, n, parse_runners(args.runner))
    return recipe, plan


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text}: expected K/N, e.g. 2/4") from None
    return k, n


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.pipeline.run import RunOptions, print_failures, run, summary_table

    recipe, plan = _load_plan(args)
    if not plan.jobs:
        console.print("nothing to build: the selection matches no job")
        return EXIT_OK
    opts = RunOptions(
        output_dir=Path(args.output_dir).resolve(),
        jobs=args.jobs,
        keep_container=args.keep_container,
        keep_failed=args.keep_failed,
        report_path=args.report,
        build_images=not args.no_build_images,
        verify=not args.no_verify,
        audit=not args.no_audit,
        shard=args.shard,
        live=False if args.plain else None,
        emulation=args.emulation,
    )
    report = run(recipe, plan, opts, console)
    out = Console(width=max(Console().width, 140))
    out.print(summary_table(report))
    print_failures(report, console)
    out.print(f"report: {opts.report_file}", highlight=False)
    return EXIT_OK if report.ok() else EXIT_BUILD_FAILED


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    _recipe, plan = _load_plan(args)
    if args.json:
        print(plan.dumps())
        return EXIT_OK
    table = Table(title=f"plan: {plan.recipe}")
    for col in ("job", "image", "source", "emulated"):
        table.add_column(col, overflow="fold")
    for job in plan.jobs:
        table.add_row(job.id, job.image, job.image_source, "yes" if job.emulated else "")
    out = Console(width=max(Console().width, 120))
    out.print(table)
    if plan.dep_order:
        out.print(f"dependencies (build order): {', '.join(plan.dep_order)}")
    for ex in plan.excluded:
        out.print(f"[dim]excluded {ex.id}: {ex.reason}[/]", highlight=False)
    return EXIT_OK


def cmd_matrix(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.plan.github import github_matrix
    from orchestrator.plan.runners import parse_runners

    _recipe, plan = _load_plan(args)
    print(json.dumps(github_matrix(plan, args.max_shards, parse_runners(args.runner))))
    return EXIT_OK


def cmd_images(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.images import commands

    if args.images_command == "build-local":
        return commands.build_local(args.arch or ["x86_64"], args.suite, args.rebuild, console)
    if args.images_command == "prune":
        from orchestrator.images.local import remove_stale_local_images

        removed = remove_stale_local_images(lambda line: console.print(line, markup=False))
        console.print(f"removed {len(removed)} stale image(s)")
        return EXIT_OK
    return commands.list_images(console)


def cmd_doctor(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.emulation.doctor import diagnose, render

    result = diagnose()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        render(result, Console())
    return result.exit_code()


def cmd_setup_emulation(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.emulation.doctor import setup_emulation

    return setup_emulation(console)


def cmd_clean(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.container import engine

    n = engine.remove_containers({engine.LABEL: "1"})
    console.print(f"removed {n} container(s)")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.audit.cli import run as run_audit

    return int(run_audit(args))


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.deps import registry
    from orchestrator.deps.cache import DepCache
    from orchestrator.util import paths

    cache = DepCache(paths.cache_dir(), log=lambda m: console.print(m, markup=False))
    if args.cache_command == "list":
        table = Table(title=f"dependency cache: {paths.cache_dir()}")
        for col in ("name", "version", "key", "size"):
            table.add_column(col)
        for e in cache.entries():
            table.add_row(e.name, e.version, e.key[:16], f"{e.size / 1024:.0f} KiB")
        Console().print(table)
    elif args.cache_command == "export":
        cache.export(args.dest, keys=args.key)
        console.print(f"exported to {args.dest}")
    elif args.cache_command == "import":
        result = cache.import_(args.source)
        console.print(
            f"imported {len(result.imported)}, already present {len(result.present)}, "
            f"rejected {len(result.rejected)}"
        )
        for item in result.rejected:
            console.print(f"  rejected: {item}", markup=False)
        return EXIT_BUILD_FAILED if result.rejected else EXIT_OK
    elif args.cache_command == "push":
        keys = args.key or [e.key for e in cache.entries()]
        for key in keys:
            digest = registry.push(cache, key, args.registry, args.repository)
            console.print(f"pushed {key[:16]} ({digest})")
    else:
        missing = 0
        for key in args.key:
            if registry.pull(cache, key, args.registry, args.repository) is None:
                console.print(f"not in the registry: {key}")
                missing += 1
        return EXIT_BUILD_FAILED if missing else EXIT_OK
    return EXIT_OK


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.report.cli import run as run_report

    return int(run_report(args))


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.recipe.load import SCHEMA_FILE

    print(SCHEMA_FILE if args.path else SCHEMA_FILE.read_text(), end="" if not args.path else "\n")
    return EXIT_OK


COMMANDS = {
    "build": cmd_build,
    "plan": cmd_plan,
    "matrix": cmd_matrix,
    "images": cmd_images,
    "doctor": cmd_doctor,
    "setup-emulation": cmd_setup_emulation,
    "clean": cmd_clean,
    "audit": cmd_audit,
    "schema": cmd_schema,
    "cache": cmd_cache,
    "report": cmd_report,
}

if __name__ == "__main__":
    sys.exit(main())
