"""Every setting orch reads, resolved once.

The environment is read here and nowhere else: `from_environ` turns it into a frozen
`EnvSettings` (the `ORCH_*` variables, the CA/proxy/pip variables containers inherit, and
a snapshot for subprocesses such as debootstrap). The command line's flags become a
`BuildOptions`. Both are passed down; `env()` is the process's snapshot for the code
that has no caller to hand it one (paths, image mirrors, registry credentials).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

CACHE_DIR = "ORCH_CACHE_DIR"
CROSS_DIR = "ORCH_CROSS_DIR"
INTERPRETER_DIR = "ORCH_INTERPRETER_DIR"  # compiled CPython interpreters (images/)
SOURCE_MIRROR = "ORCH_SOURCE_MIRROR"
CACHE_REGISTRY = "ORCH_CACHE_REGISTRY"  # e.g. 127.0.0.1:5000
CACHE_REPOSITORY = "ORCH_CACHE_REPOSITORY"
REGISTRY_USER = "ORCH_REGISTRY_USER"
REGISTRY_PASSWORD = "ORCH_REGISTRY_PASSWORD"
IMAGE_MIRROR = "ORCH_IMAGE_MIRROR"  # "quay.io/pypa=<mirror>/pypa[,from=to...]"
EMULATION = "ORCH_EMULATION"
CACHE_AUTH_HOST = "ORCH_CACHE_AUTH_HOST"
MAX_COPYOUT_MB = "ORCH_MAX_COPYOUT_MB"
CA_BUNDLE = "ORCH_CA_BUNDLE"
NO_HOST_CA = "ORCH_NO_HOST_CA"
OFFLINE = "ORCH_OFFLINE"  # 1: job and verify containers get no network (a warm cache)
ENGINE_PREFIX = "ORCH_ENGINE_"  # ORCH_ENGINE_AARCH64=ssh://builder@arm-host (plan/engines.py)
CONFIG = "ORCH_CONFIG"  # the user config file (default: $XDG_CONFIG_HOME/orch/config.yaml)
COMPILE_CACHE = "ORCH_COMPILE_CACHE"  # 0: project builds without ccache (pipeline/compilecache)
NATIVE_REPAIR = "ORCH_NATIVE_REPAIR"  # 0: emulated jobs repair with the image's auditwheel
WHEEL_PREFILL = "ORCH_WHEEL_PREFILL"  # 0: a cold job fetches its build requirements itself
NATIVE_FETCH = "ORCH_NATIVE_FETCH"  # 0: emulated jobs fetch build requirements with emulated pip
RECHECK = "ORCH_RECHECK"  # 1: audit and verify every wheel even if identical checks passed
ROOTFS_TOOL = "ORCH_ROOTFS_TOOL"  # auto (mmdebstrap when usable), debootstrap (images/rootfs)
# 0: plan every source-built interpreter without asking the mirror for its source (images/sources)
SOURCE_PROBE = "ORCH_SOURCE_PROBE"

# Variables naming a CA bundle, in the order they are honoured.
CA_BUNDLE_VARS = (CA_BUNDLE, "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
PIP_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")


def _frozen(items: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class EnvSettings:
    """What the environment says, read once."""

    cache_dir: Path | None = None
    cross_dir: Path | None = None
    interpreter_dir: Path | None = None
    source_mirrors: tuple[str, ...] = ()
    cache_registry: str | None = None
    cache_repository: str | None = None  # None: the project's own (deps/registry.py)
    cache_auth_host: str | None = None
    registry_user: str = ""
    registry_password: str = ""
    image_mirrors: tuple[tuple[str, str], ...] = ()
    emulation: str = "auto"
    max_copyout_mb: str = ""  # checked where it is used (util/archive.py)
    ca_bundles: tuple[str, ...] = ()  # values of CA_BUNDLE_VARS, in order, set ones only
    ssl_cert_file: str = ""
    no_host_ca: bool = False
    offline: bool = False
    compile_cache: bool = True
    native_repair: bool = True
    wheel_prefill: bool = True
    native_fetch: bool = True
    recheck: bool = False
    rootfs_tool: str = "auto"
    source_probe: bool = True
    proxies: Mapping[str, str] = field(default_factory=lambda: _frozen({}))  # as spelled
    pip: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    process: Mapping[str, str] = field(default_factory=lambda: _frozen({}))  # subprocesses
    engines: Mapping[str, str] = field(default_factory=lambda: _frozen({}))  # ORCH_ENGINE_*
    config_file: Path | None = None  # the user config (engines:), whether it exists or not
    docker_config: Path | None = None  # $DOCKER_CONFIG or ~/.docker: Docker contexts

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> EnvSettings:
        def get(name: str) -> str:
            return environ.get(name, "").strip()

        return cls(
            cache_dir=_path(get(CACHE_DIR)),
            cross_dir=_path(get(CROSS_DIR)),
            interpreter_dir=_path(get(INTERPRETER_DIR)),
            source_mirrors=tuple(i.strip() for i in get(SOURCE_MIRROR).split(",") if i.strip()),
            cache_registry=get(CACHE_REGISTRY) or None,
            cache_repository=get(CACHE_REPOSITORY) or None,
            cache_auth_host=get(CACHE_AUTH_HOST).lower() or None,
            registry_user=environ.get(REGISTRY_USER, ""),
            registry_password=environ.get(REGISTRY_PASSWORD, ""),
            image_mirrors=_mirror_pairs(environ.get(IMAGE_MIRROR, "")),
            emulation=environ.get(EMULATION) or "auto",
            max_copyout_mb=get(MAX_COPYOUT_MB),
            ca_bundles=tuple(environ[v] for v in CA_BUNDLE_VARS if environ.get(v)),
            ssl_cert_file=environ.get("SSL_CERT_FILE", ""),
            no_host_ca=environ.get(NO_HOST_CA) == "1",
            offline=environ.get(OFFLINE) == "1",
            compile_cache=environ.get(COMPILE_CACHE, "1").strip() != "0",
            native_repair=environ.get(NATIVE_REPAIR, "1").strip() != "0",
            wheel_prefill=environ.get(WHEEL_PREFILL, "1").strip() != "0",
            native_fetch=environ.get(NATIVE_FETCH, "1").strip() != "0",
            recheck=get(RECHECK) == "1",
            rootfs_tool=get(ROOTFS_TOOL) or "auto",
            source_probe=get(SOURCE_PROBE) != "0",
            proxies=_frozen(
                {
                    key: environ[key]
                    for name in PROXY_VARS
                    for key in (name, name.lower())
                    if environ.get(key)
                }
            ),
            pip=_frozen({v: environ[v] for v in PIP_VARS if environ.get(v)}),
            process=_frozen(environ),
            engines=_frozen(
                {k: v.strip() for k, v in environ.items() if k.startswith(ENGINE_PREFIX)}
            ),
            config_file=_config_file(environ),
            docker_config=_path(environ.get("DOCKER_CONFIG", "").strip())
            or (Path(environ["HOME"]) / ".docker" if environ.get("HOME") else None),
        )


def _path(value: str) -> Path | None:
    return Path(value).expanduser().absolute() if value else None


def _config_file(environ: Mapping[str, str]) -> Path | None:
    if environ.get(CONFIG):
        return _path(environ[CONFIG].strip())
    base = environ.get("XDG_CONFIG_HOME") or (
        f"{environ['HOME']}/.config" if environ.get("HOME") else ""
    )
    return Path(base) / "orch" / "config.yaml" if base else None


def _mirror_pairs(value: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, value.split(",")):
        if "=" in item:
            src, dst = item.split("=", 1)
            pairs.append((src.strip().rstrip("/"), dst.strip().rstrip("/")))
    return tuple(pairs)


@dataclass(frozen=True)
class BuildOptions:
    """`orch build`'s settings: its flags over the environment's defaults."""

    output_dir: Path
    jobs: int = max(1, os.cpu_count() or 2)
    keep_container: bool = False
    keep_failed: bool = False
    report_path: Path | None = None
    log_dir: Path | None = None
    build_images: bool = True
    verify: bool = True
    audit: bool = True
    shard: str | None = None
    live: bool | None = None
    emulation: str = "auto"  # auto | accelerated | gcc-cross | llvm | plain (emulation/accel.py)
    offline: bool = False  # job and verify containers without network (pipeline/buildenv.py)
    recheck: bool = False  # audit and verify even a wheel whose checks passed (pipeline/checks.py)
    env: EnvSettings = field(default_factory=EnvSettings)

    @property
    def meta_dir(self) -> Path:
        return self.output_dir / ".orch"

    @property
    def logs(self) -> Path:
        return self.log_dir or self.meta_dir / "logs"

    @property
    def report_file(self) -> Path:
        return self.report_path or self.meta_dir / "report.json"


_lock = threading.Lock()
_current: EnvSettings | None = None


def env() -> EnvSettings:
    """The process's settings: resolved from the environment on first use, then fixed."""
    global _current
    with _lock:
        if _current is None:
            _current = EnvSettings.from_environ(os.environ)
        return _current


def reset_env() -> EnvSettings:
    """Resolve again (the CLI at start-up; tests after changing the environment)."""
    global _current
    with _lock:
        _current = EnvSettings.from_environ(os.environ)
        return _current


def cpu_count() -> int:
    return max(1, os.cpu_count() or 2)
