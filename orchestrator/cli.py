"""The `orch` command line: parses arguments and calls the stage modules; no logic here.

Exit codes: 0 success; 1 a job or check failed; 2 configuration error (recipe or command
line; nothing was started); 3 environment problem (engine, image, emulation); 130/143/129
interrupted by SIGINT/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator import __version__, archs, options
from orchestrator.errors import (
    EXIT_BUILD_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    Interrupted,
    OrchError,
)
from orchestrator.util.redact import inert

if TYPE_CHECKING:
    from orchestrator.plan.jobs import Job, Plan
    from orchestrator.recipe.model import Recipe

EXIT_CODES = (
    "exit codes: 0 ok, 1 build/check failed, 2 configuration error (nothing was started), "
    "3 environment problem, 130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP)"
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REPEAT_GRACE = 10.0  # seconds a repeated signal waits for the cleanup of the first


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's example lines; adds "(default: X)" where a default says something."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        quiet = default in (None, False, [], "") or default is argparse.SUPPRESS
        if "default" in text or quiet or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An unknown flag is reported by the (sub)command that got it, with its usage and the
    nearest flag it knows, not by the top level."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if extras and self.prog != "orch":
            self.error(_unknown_message(extras, list(self._option_string_actions)))
        return ns, extras


def _unknown_message(extras: Sequence[str], known: list[str]) -> str:
    first = extras[0].split("=", 1)[0]
    hint = difflib.get_close_matches(first, known, n=1) if first.startswith("-") else []
    did = f" (did you mean {hint[0]}?)" if hint else ""
    return f"unrecognized arguments: {' '.join(extras)}{did}"


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + EXIT_CODES


# --- argparse types: a bad value fails here, with the flag, the value and the range --------


def positive_int(text: str) -> int:
    """-j, --max-shards: a whole number >= 1 (0 or negative would be silently clamped)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number; e.g. 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: must be at least 1")
    return value


def shard_spec(text: str) -> tuple[int, int]:
    """--shard K/N with 1 <= K <= N."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not K/N, e.g. 2/4") from None
    if not sep or n < 1 or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"'{text}': expected K/N with 1 <= K <= N, e.g. 2/4")
    return k, n


def arch_list(text: str) -> list[str]:
    """--arch NAME (repeatable); 'x86_64,aarch64' means both."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in archs.ARCHS:
            raise argparse.ArgumentTypeError(archs.not_an_arch(name))
    if not names:
        raise argparse.ArgumentTypeError("empty; e.g. --arch x86_64")
    return names


def _recipe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--file",
        default="orch.yaml",
        metavar="PATH",
        help="the recipe; a directory means DIR/orch.yaml",
    )


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="only this job id or glob (repeatable), e.g. cp311-manylinux_2_31_x86_64; "
        "manylinux2014/2010/1 mean manylinux_2_17/_2_12/_2_5",
    )
    p.add_argument(
        "--shard",
        type=shard_spec,
        metavar="K/N",
        help="only shard K of N (whole image/arch groups; the split `orch matrix` prints)",
    )
    _arch_arg(p, "only these architectures of the recipe's archs (repeatable or comma-separated)")
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="a selection that leaves no job is not an error (exit 0, nothing built)",
    )
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
    parser = Parser(
        prog="orch",
        description="Build, repair and verify Python wheels with native code in manylinux containers.",
        epilog=_examples("orch plan", "orch build -o wheelhouse"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    _build_command(sub)
    _plan_commands(sub)
    _images_command(sub)
    _host_commands(sub)
    _audit_command(sub)
    _cache_command(sub)
    _report_command(sub)
    return parser


if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[Parser]


def _add(sub: Sub, name: str, help_: str, description: str, *examples: str) -> Parser:
    p = sub.add_parser(
        name,
        help=help_,
        description=description,
        epilog=_examples(*examples),
        formatter_class=HelpFormatter,
    )
    return p


def _arch_arg(p: argparse.ArgumentParser, help_: str) -> None:
    p.add_argument(
        "--arch", type=arch_list, action="extend", default=[], metavar="ARCH", help=help_
    )


def _build_command(sub: Sub) -> None:
    b = _add(
        sub,
        "build",
        "build, repair, verify and audit wheels (the main job)",
        "Build every job of the recipe's matrix in fresh containers, repair with auditwheel, "
        "verify in clean containers, audit, and land the wheels atomically in the output "
        "directory. A selection that leaves no job is an error (exit 2) unless --allow-empty.",
        "orch build -f orch.yaml -o wheelhouse -j 4 --only 'cp311-*'",
    )
    _recipe_arg(b)
    _selection_args(b)
    b.add_argument(
        "--print-build-identifiers",
        action="store_true",
        help="print the selected job ids, one per line, and exit (nothing is built)",
    )
    b.add_argument("-o", "--output-dir", default="wheelhouse", help="the wheelhouse")
    b.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        default=options.cpu_count(),
        help="jobs run at once, at least 1 (default: number of CPUs)",
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
        choices=["auto", "gcc-cross", "llvm", "accelerated", "plain"],
        default=None,
        help="emulated architectures: compile natively with the matching cross gcc, else "
        "clang against the image's gcc, else plain QEMU with a message (auto, the default; "
        "env ORCH_EMULATION); the same or fail (accelerated); only that compiler or fail "
        "(gcc-cross, llvm); or compile under QEMU (plain)",
    )
    b.add_argument("--no-verify", action="store_true", help="skip clean-container verification")
    b.add_argument("--no-audit", action="store_true", help="skip orch audit of each wheel")
    b.add_argument(
        "--offline",
        action="store_true",
        help="job and verify containers get no network: build and verification "
        "requirements come from the wheel cache only (env ORCH_OFFLINE=1)",
    )
    b.add_argument(
        "--recheck",
        action="store_true",
        help="audit and verify every wheel, even one whose identical content passed the "
        "same checks in the same images before (those are reused otherwise; env "
        "ORCH_RECHECK=1)",
    )
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


def _plan_commands(sub: Sub) -> None:
    p = _add(
        sub,
        "plan",
        "show the job matrix (table or --json)",
        "Show the jobs the recipe asks for, their build and verify images, and why "
        "combinations were excluded. Validates everything that can be known before anything "
        "runs. Needs no engine.",
        "orch plan -f orch.yaml --arch aarch64 --json",
    )
    _recipe_arg(p)
    _selection_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--offline",
        action="store_true",
        help="ask the package mirror nothing: whether it serves a source-built interpreter's "
        "source comes from the cache, else is unknown (planned, with a warning; env "
        "ORCH_OFFLINE=1)",
    )
    p.add_argument(
        "--deps",
        action="store_true",
        help="print the dependency DAG per group as a tree, with cache hit/miss when the "
        "group's image is present (with --json: the DAG with cache answers)",
    )

    m = _add(
        sub,
        "matrix",
        "print a GitHub Actions matrix (JSON) of shards",
        "Group jobs by image and architecture into at most --max-shards shards and print "
        '{"include": [...]} for strategy.matrix; run each with `orch build --shard K/N`.',
        "orch matrix -f orch.yaml --max-shards 4",
    )
    _recipe_arg(m)
    m.add_argument(
        "--max-shards", type=positive_int, default=8, metavar="N", help="at most N shards (>= 1)"
    )
    m.add_argument(
        "--allow-empty", action="store_true", help="an empty plan prints an empty matrix (exit 0)"
    )
    _runner_arg(m)


def _images_command(sub: Sub) -> None:
    i = _add(
        sub,
        "images",
        "list images or build the local ones",
        "The image catalog (pypa images and orch's local ones) with each image's Pythons "
        "and whether it is present; build the local images; prune stale ones. Without a "
        "subcommand: list.",
        "orch images build-local --arch x86_64",
    )
    isub = i.add_subparsers(dest="images_command", metavar="SUBCOMMAND", parser_class=Parser)
    bl = _add(
        isub,
        "build-local",
        "build manylinux-compatible images with debootstrap (no registry)",
        "Build the local build and runtime images of an architecture from a Debian suite "
        "with debootstrap; reused while their definition is unchanged.",
        "orch images build-local --arch x86_64 --arch aarch64",
    )
    _arch_arg(bl, "architecture(s), repeatable or comma-separated (default: x86_64)")
    bl.add_argument(
        "--suite",
        choices=["bullseye", "bookworm", "forky"],
        default=None,
        help="Debian suite: bullseye -> manylinux_2_31, bookworm -> manylinux_2_36, "
        "forky -> manylinux_2_39 (Debian's CPython 3.14 and 3.15) "
        "(default: bullseye, bookworm for ppc64le and s390x, which bullseye no longer serves)",
    )
    bl.add_argument(
        "--rebuild", action="store_true", help="rebuild even if the definition is unchanged"
    )
    bl.add_argument(
        "--python",
        action="append",
        default=[],
        help="CPython(s) to put in, e.g. 3.13 or 3.13t (default: 3.9 and 3.11 where native, "
        "Debian's own where emulated); source-built ones are compiled once and cached",
    )
    bl.add_argument(
        "--emulation",
        default="auto",
        help="compiling interpreters for emulated architectures: auto (the native cross "
        "compiler where it matches, docs/emulation.md), accelerated, or plain QEMU",
    )
    bs = _add(
        isub,
        "build-stock",
        "build stock Debian images (system python3) for verification",
        "Build the stock images wheels are verified in as users install them: a Debian "
        "suite with its own python3 and venv, nothing in /opt/python (stock:<suite> in "
        "test.verify-images; built on first use otherwise).",
        "orch images build-stock bookworm trixie --arch x86_64 --arch aarch64",
    )
    bs.add_argument("suites", nargs="+", metavar="SUITE", help="bullseye, bookworm, trixie")
    _arch_arg(bs, "architecture(s), repeatable or comma-separated (default: x86_64)")
    ls = _add(
        isub,
        "list",
        "list the catalog, each image's Pythons, and the images present",
        "List every pypa and local image: policy, libc, architecture, Pythons, end of life, "
        "reference and whether it is present on this engine.",
        "orch images list --recheck",
    )
    ls.add_argument(
        "--recheck",
        action="store_true",
        help="ask the package mirror again whether it serves each source-built "
        "interpreter's source (answers are cached: served for a week, not served for a day)",
    )
    _add(
        isub,
        "prune",
        "remove local images whose definition has changed",
        "Remove local images built from an older definition (their tag no longer matches).",
        "orch images prune",
    )


def _host_commands(sub: Sub) -> None:
    d = _add(
        sub,
        "doctor",
        "check the engine, emulation, disk and images",
        "Report whether this host can run orch's jobs (per architecture: native, QEMU, or "
        "not at all), and how to fix what is missing. Exit 3 when something is missing.",
        "orch doctor --json",
    )
    d.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    _add(
        sub,
        "setup-emulation",
        "register QEMU binfmt handlers (root)",
        "Register binfmt_misc handlers with the F flag from the host's qemu-user-static "
        "(update-binfmts). Needs root.",
        "orch setup-emulation    # as root",
    )
    cl = _add(
        sub,
        "clean",
        "remove containers orch left behind (e.g. --keep-container, a killed run)",
        "Remove orch's containers whose run is over (its process is gone); containers of "
        "runs still going, or of other hosts, are left alone unless --all.",
        "orch clean",
    )
    cl.add_argument("--all", action="store_true", help="also containers of live runs")
    s = _add(
        sub,
        "schema",
        "print the recipe JSON Schema (for editors)",
        "Print the JSON Schema orch validates orch.yaml with (docs/recipe.md explains each "
        "field); --path prints where the file is, for an editor's settings.",
        "orch schema --path",
    )
    s.add_argument("--path", action="store_true", help="print the schema file's path instead")


def _audit_command(sub: Sub) -> None:
    a = _add(
        sub,
        "audit",
        "audit wheels: symbols, versions, exports, RPATHs, RECORD",
        "Checks auditwheel does not do. Exit 1 if an error-level check fails.",
        "orch audit wheelhouse/*.whl --downgrade exported-std=warning:reviewed",
    )
    from orchestrator.audit.cli import configure_parser

    configure_parser(a)
    a.epilog = _examples(
        "orch audit wheelhouse/*.whl --downgrade exported-std=warning:reviewed"
    ).replace(EXIT_CODES, "exit codes: 0 clean, 1 an error-level finding, 2 unreadable wheel")


def _cache_command(sub: Sub) -> None:
    c = _add(
        sub,
        "cache",
        "the dependency cache: list, export, import, push, pull",
        "Built dependencies are cached by a content key under $ORCH_CACHE_DIR (default: the "
        "user cache dir). Move them between machines with export/import (a directory or "
        ".tar/.tar.gz) or an OCI registry (push/pull).",
        "orch cache export deps.tar.gz",
    )
    csub = c.add_subparsers(
        dest="cache_command", required=True, metavar="SUBCOMMAND", parser_class=Parser
    )
    _add(
        csub,
        "list",
        "list cached dependency builds",
        "List the cache's entries: name, version, key, size.",
        "orch cache list",
    )
    ce = _add(
        csub,
        "export",
        "export entries to a directory or a .tar/.tar.gz",
        "Copy cache entries (all, or --key ones) to a directory or a tarball.",
        "orch cache export deps.tar.gz --key 3f2a...",
    )
    ce.add_argument("dest", type=Path, help="a directory, .tar or .tar.gz")
    ce.add_argument("--key", action="append", default=None, help="only these keys (repeatable)")
    ci = _add(
        csub,
        "import",
        "import (and verify) entries from a directory or tarball",
        "Import entries exported by `orch cache export`; each is verified against its "
        "checksums, rejected ones are listed (exit 1).",
        "orch cache import deps.tar.gz",
    )
    ci.add_argument("source", type=Path, help="a directory, .tar or .tar.gz")
    cp = _add(
        csub,
        "push",
        "push entries to an OCI registry",
        "Upload cache entries (all, or --key ones) to an OCI registry as artifacts.",
        "orch cache push 127.0.0.1:5000 --repository orch/deps/myproject",
    )
    _registry_args(cp)
    cp.add_argument("--key", action="append", default=[], help="only these keys (default: all)")
    cl = _add(
        csub,
        "pull",
        "pull entries from an OCI registry",
        "Download the named cache entries (--key, required: a pull names what it wants) from "
        "an OCI registry; a key the registry does not have is reported (exit 1).",
        "orch cache pull 127.0.0.1:5000 --key 3f2a...",
    )
    _registry_args(cl)
    cl.add_argument("--key", action="append", required=True, help="keys to pull (repeatable)")


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("registry", help="e.g. 127.0.0.1:5000 or https://registry.example")
    p.add_argument(
        "--repository",
        default=None,
        help="the repository in the registry (default: $ORCH_CACHE_REPOSITORY, else "
        "orch/deps/<name of ./orch.yaml>, as builds use)",
    )


def _report_command(sub: Sub) -> None:
    r = _add(
        sub,
        "report",
        "merge run reports; write JUnit, Markdown, HTML, annotations",
        "Merge the reports of shards into one and render it as JUnit XML, Markdown (job "
        "summary) or a self-contained HTML page.",
        "orch report wheelhouse --html report.html --junit junit.xml",
    )
    from orchestrator.report.cli import configure_parser as configure_report

    configure_report(r)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    options.reset_env()  # the environment, read once for the whole command
    with _stop_signals_interrupt():
        try:
            return int(COMMANDS[args.command](args, console))
        except OrchError as exc:
            # Text, not markup: messages hold brackets (archs[0]) and may quote build output
            # or URLs (redacted, inert); soft wrap keeps paths whole.
            error = Text.assemble(("error:", "bold red"), " ", inert(str(exc)))
            console.print(error, soft_wrap=True)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            console.print("[yellow]interrupted[/]")
            return exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (CI timeouts, a closed terminal) stop orch as Ctrl-C does. A
    repeat within REPEAT_GRACE is ignored, so that cleaning up is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[float] = []

    def stop(signum: int, _frame: object) -> None:
        now = time.monotonic()
        if first and now - first[0] < REPEAT_GRACE:
            return
        first[:] = [now]
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


# --- commands -------------------------------------------------------------------------


def _recipe_path(arg: str) -> Path:
    path = Path(arg)
    return path / "orch.yaml" if path.is_dir() else path


def _load_plan(args: argparse.Namespace, probe: bool = True):  # type: ignore[no-untyped-def]
    """The recipe and its plan, selected and sharded as the flags say. `probe` False: no
    source is asked about (`orch matrix`: its split must not depend on this machine's
    view of the mirror; each shard's runner asks its own)."""
    from orchestrator.images.sources import for_host
    from orchestrator.plan.engines import engine_routes, with_engines
    from orchestrator.plan.jobs import make_plan
    from orchestrator.plan.runners import parse_runners
    from orchestrator.recipe import load_recipe

    recipe = load_recipe(_recipe_path(args.file))
    routes = engine_routes(options.env())
    sources = for_host(offline=getattr(args, "offline", False)) if probe else None

    def selected(plan: Plan) -> Plan:
        plan = plan.select_archs(getattr(args, "arch", []) or [])
        return plan.select(getattr(args, "only", []) or [])

    plan = selected(with_engines(make_plan(recipe, sources=sources), routes))
    if getattr(args, "shard", None):
        k, n = args.shard
        runners = parse_runners(args.runner)
        if sources is None:
            plan = plan.shard(k, n, runners)
        else:  # cut as `orch matrix` does, from the plan every runner computes alike
            # (one runner's probe may fail where another's answers): then this runner's
            # probe removes what its mirror does not serve
            cut = selected(with_engines(make_plan(recipe), routes)).shard(k, n, runners)
            plan = plan.keep_ids({j.id for j in cut.jobs}, f"in another shard than {k}/{n}")
    if not plan.jobs and not args.allow_empty:
        raise ConfigError(plan.why_empty())
    return recipe, plan


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.pipeline.run import run
    from orchestrator.pipeline.summary import compile_cache_line, print_failures, summary_table

    recipe, plan = _load_plan(args)
    _print_plan_warnings(plan, console)
    if args.print_build_identifiers:
        for job in plan.jobs:
            print(job.id)
        return EXIT_OK
    if not plan.jobs:
        console.print("nothing to build: the selection leaves no job (--allow-empty)")
        return EXIT_OK
    _check_output_dirs(Path(args.output_dir), args.report)
    opts = build_options(args, options.env())
    report = run(recipe, plan, opts, console)
    out = Console(width=max(Console().width, 140))
    out.print(summary_table(report))
    ccache = compile_cache_line(report)
    if ccache:
        out.print(ccache, highlight=False)
    print_failures(report, console)
    out.print(f"report: {opts.report_file}", highlight=False)
    return EXIT_OK if report.ok() else EXIT_BUILD_FAILED


def build_options(args: argparse.Namespace, env: options.EnvSettings) -> options.BuildOptions:
    """`orch build`'s flags over the environment's defaults."""
    return options.BuildOptions(
        output_dir=Path(args.output_dir).resolve(),
        jobs=args.jobs,
        keep_container=args.keep_container,
        keep_failed=args.keep_failed,
        report_path=args.report,
        build_images=not args.no_build_images,
        verify=not args.no_verify,
        audit=not args.no_audit,
        shard=f"{args.shard[0]}/{args.shard[1]}" if args.shard else None,
        live=False if args.plain else None,
        emulation=args.emulation or env.emulation,
        offline=args.offline or env.offline,
        recheck=args.recheck or env.recheck,
        env=env,
    )


def _check_output_dirs(output: Path, report: Path | None) -> None:
    """The wheelhouse and the report are made only inside a directory that exists: a typo
    in -o must not create a tree somewhere else."""
    out = output.absolute()
    if not out.is_dir() and not out.parent.is_dir():
        raise ConfigError(
            f"-o {output}: the directory {out.parent} does not exist; create it first "
            f"(mkdir -p {out.parent}) or choose another output directory"
        )
    if report is not None:
        parent = report.absolute().parent
        if not parent.is_dir() and not parent.is_relative_to(out):
            raise ConfigError(
                f"--report {report}: the directory {parent} does not exist; create it first "
                f"(mkdir -p {parent})"
            )


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    recipe, plan = _load_plan(args)
    _print_plan_warnings(plan, console)
    from orchestrator.plan.dag import dag, render_tree

    groups = dag(plan, _dep_cache_answers(recipe, plan) if args.deps else None)
    if args.json:
        print(
            json.dumps(plan.to_json() | {"dependency_dag": [g.to_json() for g in groups]}, indent=2)
        )
        return EXIT_OK
    if args.deps:
        for line in render_tree(groups):
            print(line)
        return EXIT_OK
    table = Table(title=f"plan: {plan.recipe}")
    for col in ("job", "image", "source", "verified in", "emulated", "engine"):
        table.add_column(col, overflow="fold")
    stock = _predicted_stock(recipe, plan)
    for job in plan.jobs:
        verify = "\n".join([*(job.verify_images or (job.runtime_image,)), *stock.get(job.id, [])])
        emulated = "yes" if job.emulated else ""
        if job.engine:  # the engine's own architecture decides, once it is asked
            emulated = "as its engine runs it"
        row = (job.id, job.image, job.image_source, verify, emulated, job.engine or "local")
        table.add_row(*row)
    out = Console(width=max(Console().width, 120))
    out.print(table)
    if plan.dep_order:
        names = [f"{n} (network)" if n in plan.dep_network else n for n in plan.dep_order]
        out.print(f"dependencies (build order): {', '.join(names)}", highlight=False)
        if plan.dep_network:
            out.print(
                f"[yellow]network access during the build: {', '.join(plan.dep_network)}[/] "
                "(the others build offline)",
                highlight=False,
            )
    for ex in plan.excluded:
        out.print(Text(f"excluded {ex.id}: {ex.reason}", style="dim"), soft_wrap=True)
    return EXIT_OK


def _dep_cache_answers(recipe: Recipe, plan: Plan) -> Callable[[str, str], str | None]:
    """Cache hit/miss per (group, dependency) where it can be known without building: the
    group's toolchain image is present (the key needs its id) and it is not emulated (an
    accelerated build's key also names the cross root, decided at run time)."""
    from orchestrator.deps import glibcpin
    from orchestrator.deps.cache import DepCache
    from orchestrator.deps.stage import dependency_keys
    from orchestrator.util import paths

    cache = DepCache(paths.cache_dir())
    keys: dict[str, dict[str, str] | None] = {}
    for group, jobs in plan.groups():
        first = jobs[0]
        image_id = None if first.emulated else _toolchain_id(first)
        pin = glibcpin.ceiling(first.policy, first.image_source)
        keys[group] = dependency_keys(recipe, image_id, first.arch, pin) if image_id else None

    def answer(group: str, name: str) -> str | None:
        found = keys.get(group)
        if not found or name not in found:
            return None
        return "hit" if cache.lookup(found[name]) else "miss"

    return answer


def _toolchain_id(job: Job) -> str | None:
    """The id that keys a group's dependencies: its image's base (a local job image), or
    the local base alone when the job image is not built yet, or the image itself."""
    from orchestrator.container import engine
    from orchestrator.pipeline.images import BuiltLocalImages

    try:
        info = engine.inspect_image(job.image)
        base = info.labels.get("io.orch.base") if info else None
        if info is None and job.image_source == "local":
            base = BuiltLocalImages("plain").base_ref(job)
        found = engine.inspect_image(base) if base else info
    except Exception:  # no engine, or it failed: unknown is a fine answer for a plan
        return None
    return found.id if found else None


def _predicted_stock(recipe: Recipe, plan: Plan) -> dict[str, list[str]]:
    """Per job, the stock image its wheel will also be verified in (test.stock-images),
    with "(if present)" when auto mode will skip it because it is not built."""
    from orchestrator.container import engine
    from orchestrator.images import stock

    mode = recipe.test.stock_images
    if mode == "never":
        return {}
    present: dict[str, bool] = {}
    out: dict[str, list[str]] = {}
    for job in plan.jobs:
        chosen = stock.predict_default(job.python, job.policy, job.arch)
        if chosen is None or chosen in job.verify_images:
            continue
        ref = stock.stock_ref(chosen, job.arch)
        if mode == "auto" and ref not in present:
            try:
                present[ref] = engine.inspect_image(ref) is not None
            except OrchError:  # no engine: the plan still says what a run would do
                present[ref] = False
        absent = mode == "auto" and not present[ref]
        out[job.id] = [f"{chosen} (if present)" if absent else chosen]
    return out


def _print_plan_warnings(plan: Plan, console: Console) -> None:
    """On stderr, so `orch plan --json` output stays machine-readable."""
    err = Console(stderr=True, width=max(console.width, 120))
    for warning in plan.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def cmd_matrix(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.plan.github import github_matrix
    from orchestrator.plan.runners import parse_runners

    _recipe, plan = _load_plan(args, probe=False)
    print(json.dumps(github_matrix(plan, args.max_shards, parse_runners(args.runner))))
    return EXIT_OK


def cmd_images(args: argparse.Namespace, console: Console) -> int:
    from orchestrator.images import commands

    if args.images_command == "build-local":
        from orchestrator.emulation.compile_aid import interpreter_accelerator

        pythons = tuple(args.python) or None
        aid = interpreter_accelerator(args.emulation)
        return commands.build_local(
            args.arch or ["x86_64"], args.suite, args.rebuild, console, pythons, aid
        )
    if args.images_command == "build-stock":
        return commands.build_stock(args.suites, args.arch or ["x86_64"], console)
    if args.images_command == "prune":
        from orchestrator.images.local import remove_stale_local_images

        removed = remove_stale_local_images(lambda line: console.print(line, markup=False))
        console.print(f"removed {len(removed)} stale image(s)")
        return EXIT_OK
    return commands.list_images(console, recheck=getattr(args, "recheck", False))


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
    from orchestrator.container.engine import DockerEngine
    from orchestrator.container.factory import dead_runs_containers
    from orchestrator.container.types import LABEL
    from orchestrator.errors import EnvironmentProblem
    from orchestrator.plan.engines import engine_routes

    engines = {"local": DockerEngine()}
    for route in engine_routes(options.env()).values():  # and every routed engine
        try:
            engines.setdefault(route.target, DockerEngine(route.url(), route.fix))
        except ConfigError as exc:
            console.print(f"engine {route.target}: skipped, {exc}", highlight=False)
    for name, engine in engines.items():
        try:
            dead = dead_runs_containers(engine, everything=args.all)
            for info in dead:
                engine.remove(info.handle)
            live = len(engine.containers({LABEL: "1"}))
        except EnvironmentProblem as exc:
            if name == "local":
                raise
            console.print(f"engine {name}: skipped, {exc}", highlight=False)
            continue
        where = "" if name == "local" else f"engine {name}: "
        console.print(
            f"{where}removed {len(dead)} container(s)"
            + (f"; {live} of live runs left" if live else ""),
            highlight=False,
        )
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
            digest = registry.push(cache, key, args.registry, _cache_repository(args.repository))
            console.print(f"pushed {key[:16]} ({digest})")
    else:
        missing = 0
        for key in args.key:
            if registry.pull(cache, key, args.registry, _cache_repository(args.repository)) is None:
                console.print(f"not in the registry: {key}")
                missing += 1
        return EXIT_BUILD_FAILED if missing else EXIT_OK
    return EXIT_OK


def _cache_repository(given: str | None) -> str:
    """The registry repository of `orch cache push/pull`: the one builds use."""
    from orchestrator.deps import registry
    from orchestrator.recipe import load_recipe

    if given:
        return given
    if from_env := registry.repository_from_env():
        return from_env
    recipe = Path("orch.yaml")
    if not recipe.is_file():
        raise ConfigError(
            "no --repository given, ORCH_CACHE_REPOSITORY is unset and there is no orch.yaml "
            "here to name the project; pass --repository orch/deps/<project>"
        )
    return registry.default_repository(load_recipe(recipe).name)


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
