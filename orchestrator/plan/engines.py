"""Which container engine runs each architecture's jobs (docs/engines.md).

By default every job runs on the local engine (DOCKER_HOST or the default socket). An
architecture can be routed to another engine, typically a native machine of that
architecture, so its jobs run there natively instead of under QEMU:

- `ORCH_ENGINE_<ARCH>=<target>` (ORCH_ENGINE_AARCH64=ssh://builder@arm-host), which wins;
- the user config file (`$ORCH_CONFIG`, else `$XDG_CONFIG_HOME/orch/config.yaml`, else
  `~/.config/orch/config.yaml`): `engines: {aarch64: ssh://builder@arm-host}`.

A target is a URL (unix://, tcp://, ssh://) or the name of a Docker context. Engines are
a property of the machine running orch, not of the project, which is why they are not a
recipe field: a recipe is shared, a build host's address is not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from orchestrator import archs, options
from orchestrator.errors import ConfigError
from orchestrator.plan.jobs import Plan

SCHEMES = ("unix://", "tcp://", "ssh://")
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # docker's own rule for context names
LOCAL = "local"


@dataclass(frozen=True)
class Route:
    arch: str
    target: str  # a URL, or a Docker context's name
    source: str  # where it was set, as the user can find it again

    @property
    def is_context(self) -> bool:
        return "://" not in self.target

    def url(self, settings: options.EnvSettings | None = None) -> str:
        """The engine's endpoint: the target, or its Docker context's."""
        return context_endpoint(self.target, settings) if self.is_context else self.target

    @property
    def fix(self) -> str:
        return (
            f"fix: start the engine {self.target} (or check that this machine can reach it), "
            f"or route {self.arch} elsewhere: {self.source} (without a route, {self.arch} "
            "builds on the local engine)"
        )


def engine_routes(settings: options.EnvSettings | None = None) -> dict[str, Route]:
    """Every architecture routed away from the local engine: the config file's `engines:`,
    then ORCH_ENGINE_<ARCH> over it (an empty value routes back to the local engine)."""
    settings = settings or options.env()
    routes = _from_file(settings.config_file) if settings.config_file else {}
    for var, value in sorted(settings.engines.items()):
        arch = var.removeprefix(options.ENGINE_PREFIX).lower()
        if arch not in archs.ARCHS:
            known = ", ".join(options.ENGINE_PREFIX + a.upper() for a in archs.ARCHS)
            raise ConfigError(f"{var}: {arch!r} is not an architecture orch builds ({known})")
        if not value or value == LOCAL:
            routes.pop(arch, None)
            continue
        routes[arch] = Route(arch, _checked(value, var), var)
    return routes


def _from_file(path: Path) -> dict[str, Route]:
    try:
        data: Any = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from None
    engines = (data or {}).get("engines") if isinstance(data, dict) else None
    if engines is None:
        return {}
    if not isinstance(engines, dict):
        raise ConfigError(
            f"{path}: engines: must map architectures to engines, "
            "e.g. `engines: {aarch64: ssh://builder@arm-host}`"
        )
    routes = {}
    for arch, target in engines.items():
        where = f"{path}: engines.{arch}"
        if arch not in archs.ARCHS:
            raise ConfigError(
                f"{where}: not an architecture orch builds ({', '.join(archs.ARCHS)})"
            )
        if target in (None, "", LOCAL):
            continue
        routes[str(arch)] = Route(str(arch), _checked(str(target), where), where)
    return routes


def _checked(target: str, where: str) -> str:
    target = target.strip()
    if "://" in target:
        if not target.startswith(SCHEMES):
            raise ConfigError(
                f"{where}: {target!r}: an engine URL starts with {', '.join(SCHEMES)} "
                "(or give the name of a Docker context)"
            )
        return target
    if not _CONTEXT.match(target):
        raise ConfigError(
            f"{where}: {target!r} is neither an engine URL ({', '.join(SCHEMES)}) nor a "
            "Docker context name (`docker context ls`)"
        )
    return target


def context_endpoint(name: str, settings: options.EnvSettings | None = None) -> str:
    """A Docker context's engine endpoint, read as the docker CLI stores it
    (`<DOCKER_CONFIG>/contexts/meta/<sha256 of the name>/meta.json`); the SDK's own reader
    misses contexts when no config.json exists beside them."""
    base = (settings or options.env()).docker_config
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = base / "contexts" / "meta" / digest / "meta.json" if base else None
    try:
        data: Any = json.loads(meta.read_text()) if meta else None
        host = data["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"no Docker context named {name!r} (in {base or '~/.docker'}/contexts); create it "
            f"with `docker context create {name} --docker host=ssh://user@host`, or give a URL"
        ) from None
    return str(host)


def with_engines(plan: Plan, routes: dict[str, Route]) -> Plan:
    """The plan with each job's engine named ("" = the local engine)."""
    jobs = tuple(
        replace(j, engine=routes[j.arch].target if j.arch in routes else "") for j in plan.jobs
    )
    return replace(plan, jobs=jobs)
