"""Per-architecture engines for one run: a container factory per routed architecture
(plan/engines.py says which), sharing the run's identity, cancellation and host
environment with the local factory, and each engine's own machine, asked once.

A routed engine is "remote": orch's bind mounts (CA bundle, toolchain roots, the wheel
cache's tools) become copies into each container, because its files are not this host's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from orchestrator import archs
from orchestrator.container.engine import DockerEngine
from orchestrator.container.factory import ContainerFactory, remove_run_containers
from orchestrator.container.types import Engine
from orchestrator.errors import OrchError
from orchestrator.plan.engines import Route


@dataclass(frozen=True)
class RoutedEngine:
    route: Route
    factory: ContainerFactory | None  # None: unreachable (see error)
    machine: str = ""  # the engine's architecture, as `docker info` says
    error: str = ""

    @property
    def native(self) -> bool:
        return self.factory is not None and archs.runs_natively(self.route.arch, self.machine)


@dataclass(frozen=True)
class EngineRouter:
    local: ContainerFactory
    routed: Mapping[str, RoutedEngine] = field(default_factory=dict)  # arch -> its engine

    def factory_for(self, arch: str) -> ContainerFactory:
        found = self.routed.get(arch)
        return found.factory if found and found.factory else self.local

    def routed_factory(self, arch: str) -> ContainerFactory | None:
        """The factory of the architecture's routed engine (None: the local one)."""
        found = self.routed.get(arch)
        return found.factory if found else None

    def error_for(self, arch: str) -> str:
        found = self.routed.get(arch)
        return found.error if found else ""

    def emulated(self, arch: str, planned: bool) -> bool:
        """On a routed engine, whether the engine's machine runs the architecture."""
        found = self.routed.get(arch)
        return planned if found is None or found.factory is None else not found.native

    def remote_factories(self) -> list[ContainerFactory]:
        seen: dict[int, ContainerFactory] = {}
        for r in self.routed.values():
            if r.factory is not None:
                seen.setdefault(id(r.factory.engine), r.factory)
        return list(seen.values())

    def clean_up(self, keep: set[str], warn: Callable[[str], None]) -> int:
        """The run's containers on every routed engine; one that is down is a warning
        (its engine removes them itself: they are started with auto-remove)."""
        removed = 0
        for factory in self.remote_factories():
            try:
                removed += remove_run_containers(factory.engine, factory.run, keep=keep)
            except OrchError as exc:
                warn(f"could not remove the run's containers on a routed engine: {exc}")
        return removed


def route_engines(
    local: ContainerFactory,
    routes: Mapping[str, Route],
    connect: Callable[[str, str], tuple[Engine, str]] | None = None,
) -> EngineRouter:
    """Every routed architecture's engine, reached and asked its machine now: one that
    cannot be reached fails only its architecture's jobs (its error carries the fix)."""
    connect = connect or _docker_engine
    by_target: dict[str, RoutedEngine] = {}
    routed: dict[str, RoutedEngine] = {}
    for arch, route in sorted(routes.items()):
        known = by_target.get(route.target)
        if known is None:
            known = by_target[route.target] = _reach(local, route, connect)
        routed[arch] = dataclasses.replace(known, route=route)
    return EngineRouter(local, routed)


def _reach(
    local: ContainerFactory, route: Route, connect: Callable[[str, str], tuple[Engine, str]]
) -> RoutedEngine:
    try:
        url = route.url()
        engine, machine = connect(url, route.fix)
    except OrchError as exc:
        return RoutedEngine(route, None, error=_with_fix(str(exc), route))
    factory = dataclasses.replace(local, engine=engine, remote=True, engine_name=route.target)
    return RoutedEngine(route, factory, machine)


def _with_fix(message: str, route: Route) -> str:
    return message if route.fix in message else f"{message}\n  {route.fix}"


def _docker_engine(url: str, fix: str) -> tuple[Engine, str]:
    engine = DockerEngine(url, fix)
    return engine, engine.arch()
