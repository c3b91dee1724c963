"""`orch images` subcommands: list the catalog with what is present; build local images."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orchestrator.container import engine
from orchestrator.errors import EXIT_OK
from orchestrator.plan import catalog


def list_images(console: Console) -> int:
    cat = catalog.load()
    table = Table(title="image catalog")
    for col in ("policy", "source", "libc", "arch", "pythons", "eol", "image", "present"):
        table.add_column(col)
    for p in cat.pypa.values():
        for arch in p.archs:
            ref = p.reference.format(arch=arch)
            libc, pythons = f"{p.libc} {p.libc_version}", " ".join(p.pythons)
            table.add_row(p.name, "pypa", libc, arch, pythons, p.eol or "", ref, _present(ref))
    from orchestrator.images.local import local_image_ref

    for loc in cat.local.values():
        for arch in loc.archs:
            for variant in ("build", "runtime"):
                ref = local_image_ref(arch, variant, loc.suite)
                table.add_row(
                    loc.policy,
                    f"local ({loc.suite}, {variant})",
                    f"glibc {loc.libc_version}",
                    arch,
                    " ".join(loc.pythons(arch)),
                    "",
                    ref,
                    _present(ref),
                )
    Console(width=max(Console().width, 160)).print(table)  # not wrapped into a column of dots
    return EXIT_OK


def _present(ref: str) -> str:
    try:
        return "yes" if engine.inspect_image(ref) else ""
    except Exception:
        return "?"


def build_local(arch_names: list[str], suite: str, rebuild: bool, console: Console) -> int:
    from orchestrator.images.local import ensure_local_image

    for arch in arch_names:
        for variant in ("runtime", "build"):
            console.print(f"[bold]{arch} {variant}[/] ({suite})")
            info = ensure_local_image(
                arch,
                variant,
                suite=suite,
                rebuild=rebuild,
                on_line=lambda line: console.print(f"  {line}", markup=False, highlight=False),
            )
            console.print(f"  -> {info.ref} ({info.architecture})")
    return EXIT_OK
