"""`orch images` subcommands: list the catalog with what is present; build local images."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from orchestrator.container import engine
from orchestrator.errors import EXIT_OK, ConfigError
from orchestrator.images import definition, interpreters, sources
from orchestrator.images.interpreters import Accelerator
from orchestrator.images.sources import SourceChecks
from orchestrator.plan import catalog


def list_images(console: Console, recheck: bool = False) -> int:
    cat = catalog.load()
    checks = sources.for_host(recheck=recheck)
    table = Table(title="image catalog")
    for col in ("policy", "source", "libc", "arch", "pythons", "eol", "image", "present"):
        table.add_column(col)
    for p in cat.pypa.values():
        for arch in p.archs:
            ref = p.reference.format(arch=arch)
            libc, pythons = f"{p.libc} {p.libc_version}", " ".join(p.pythons)
            table.add_row(p.name, "pypa", libc, arch, pythons, p.eol or "", ref, _present(ref))
    wide = Console(width=max(Console().width, 160))  # not wrapped into a column of dots
    wide.print(table)
    wide.print(local_pythons_table(cat, checks))
    if checks is not None:
        wide.print(sources_table(checks))
    return EXIT_OK


def sources_table(checks: SourceChecks) -> Table:
    """Each Debian source package a local image compiles an interpreter from, and whether
    the package mirror serves it (what `orch plan` decides by)."""
    table = Table(title="sources of the compiled interpreters (the package mirror's answer)")
    for col in ("suite", "package", "version", "for", "answer"):
        table.add_column(col, overflow="fold")
    users = _source_users()
    for suite, package in sources.named_sources():
        check = checks(suite, package)
        answer = check.summary()
        if check.state == sources.UNSERVED:
            answer += f"\n{check.url}"
        table.add_row(suite, package, check.version, " ".join(users[suite, package]), answer)
    return table


def _source_users() -> dict[tuple[str, str], list[str]]:
    """(suite, package) -> the families and tags compiled from it: manylinux_2_31:cp314t."""
    out: dict[tuple[str, str], list[str]] = {}
    for loc in catalog.load().local.values():
        for tag, src in definition.load_suite(loc.suite).source_pythons.items():
            out.setdefault((src.suite, src.package), []).append(f"{loc.policy}:{_short(tag)}")
    return out


def local_pythons_table(cat: catalog.Catalog, checks: SourceChecks | None = None) -> Table:
    """Per local image family and architecture: the Pythons it offers (a compiled one only
    when the mirror serves its source, or nobody asked), those compiled (in the interpreter
    store), and the images present with the Pythons each carries."""
    present = _present_local_images()
    table = Table(title="local images: Pythons (source-built ones are compiled on demand)")
    for col in ("policy", "suite", "arch", "available", "built", "images present"):
        table.add_column(col)
    for loc in cat.local.values():
        defn = definition.load_suite(loc.suite)
        for arch in loc.archs:
            plat = f"{loc.policy}_{arch}"
            built = {r["tag"] for r in interpreters.built_interpreters(plat)}
            debian = defn.debian_tags()
            offered = [
                t for t in defn.available() if cat.offers(loc.policy, arch, _version(t), checks)
            ]
            table.add_row(
                loc.policy,
                loc.suite,
                arch,
                " ".join(_short(t) for t in offered),
                " ".join(_short(t) for t in defn.available() if t in built or t in debian),
                "\n".join(present.get(plat, [])),
            )
    return table


def _version(tag: str) -> str:
    return definition.version_of(tag)


def _short(tag: str) -> str:
    return definition.normalize_python(tag).split("-")[1]


def _present_local_images() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        images = engine.list_images("io.orch.image=local")
    except Exception:  # no engine: list what the definitions offer anyway
        return out
    for info in images:
        plat = f"{info.labels.get('io.orch.policy')}_{info.labels.get('io.orch.arch')}"
        pythons = " ".join(
            _short(t) for t in info.labels.get("io.orch.pythons", "").split(",") if t
        )
        out.setdefault(plat, []).append(f"{info.ref} ({pythons})")
    return out


def _echo(console: Console, line: str) -> None:
    if not line.startswith("[orch] "):  # phases are printed with their time by `phase`
        console.print(f"  {line}", markup=False, highlight=False)


def _present(ref: str) -> str:
    try:
        return "yes" if engine.inspect_image(ref) else ""
    except Exception:
        return "?"


def suite_for(arch: str, suite: str | None, cat: catalog.Catalog) -> str:
    """The Debian suite to build arch's local images from: the one asked for, else the
    first local family that builds arch (bullseye's archive no longer serves ppc64le and
    s390x, so they default to bookworm rather than failing in the root build)."""
    families = list(cat.local.values())
    builds = [loc.suite for loc in families if arch in loc.archs]
    if suite is None:
        if not builds:
            raise ConfigError(f"no local image family builds {arch} (images/catalog.yaml)")
        return builds[0]
    if any(loc.suite == suite and arch in loc.unserved for loc in families):
        fix = f"; use --suite {builds[0]}" if builds else ""
        raise ConfigError(f"--suite {suite}: Debian {suite}'s archive no longer serves {arch}{fix}")
    return suite


def build_local(
    arch_names: list[str],
    suite: str | None,
    rebuild: bool,
    console: Console,
    pythons: tuple[str, ...] | None = None,
    accelerator: Accelerator | None = None,
) -> int:
    from orchestrator.images.local import ensure_local_image

    t0 = time.monotonic()
    cat = catalog.load()
    suites = {arch: suite_for(arch, suite, cat) for arch in arch_names}  # all checked first

    def phase(text: str) -> None:
        console.print(f"[{time.monotonic() - t0:7.1f}s] {text}", markup=False, highlight=False)

    for arch in arch_names:
        _check_sources(arch, suites[arch], pythons, console)

    for arch in arch_names:
        for variant in ("runtime", "build"):
            console.print(f"[bold]{arch} {variant}[/] ({suites[arch]})")
            info = ensure_local_image(
                arch,
                variant,
                suite=suites[arch],
                pythons=pythons,
                rebuild=rebuild,
                on_line=lambda line: _echo(console, line),
                on_phase=phase,
                accelerator=accelerator,
            )
            console.print(f"  -> {info.ref} ({info.architecture})")
    return EXIT_OK


def _check_sources(
    arch: str, suite: str, pythons: tuple[str, ...] | None, console: Console
) -> None:
    """A compiled interpreter whose source the mirror does not serve is refused before
    anything is built (with the mirror's answer); an unchecked one is built with a note."""
    checks = sources.for_host()
    if checks is None:
        return
    defn = definition.load_suite(suite)
    for tag in definition.resolve_pythons(defn, arch, pythons):
        src = defn.source_pythons.get(tag)
        check = checks(src.suite, src.package) if src else None
        if check is not None and check.excludes:
            raise ConfigError(f"--python {definition.version_of(tag)} ({suite}): {check.reason()}")
        if check is not None and check.state != sources.SERVED:
            console.print(f"[yellow]note:[/] {check.note()}", highlight=False)


def build_stock(suites: list[str], arch_names: list[str], console: Console) -> int:
    """`orch images build-stock`: stock Debian images, timed (debootstrap included)."""
    import time

    from orchestrator.images.stock import PREFIX, ensure_stock_image

    for suite in suites:
        for arch in arch_names:
            console.print(f"[bold]{PREFIX}{suite} {arch}[/]")
            t0 = time.monotonic()
            info = ensure_stock_image(
                f"{PREFIX}{suite.removeprefix(PREFIX)}",
                arch,
                on_line=lambda line: console.print(f"  {line}", markup=False, highlight=False),
            )
            console.print(f"  -> {info.ref} ({info.architecture}) in {time.monotonic() - t0:.0f} s")
    return EXIT_OK
