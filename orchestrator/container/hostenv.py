"""What containers inherit from the host: its CA bundle and its proxy settings.

Behind a TLS-intercepting proxy (corporate networks, and this project's own CI machine)
pip inside a container only reaches the package index when it trusts the host's CA
bundle. orch mounts the bundle read-only and points every usual variable at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import options
from orchestrator.container.types import Mount

CONTAINER_CA_PATH = "/etc/orch/host-ca-bundle.crt"
CA_ENV_VARS = (
    "PIP_CERT",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/cert.pem",
)


@dataclass(frozen=True)
class HostEnv:
    ca_bundle: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def mounts(self) -> list[Mount]:
        if self.ca_bundle is None:
            return []
        return [Mount(str(self.ca_bundle), CONTAINER_CA_PATH, read_only=True)]


def find_ca_bundle(settings: options.EnvSettings | None = None) -> Path | None:
    """ORCH_CA_BUNDLE, then the variables tools already honour, then the usual paths."""
    settings = settings or options.env()
    for value in settings.ca_bundles:
        if Path(value).is_file():
            return Path(value).resolve()
    for candidate in CA_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def host_env(settings: options.EnvSettings | None = None, use_ca: bool = True) -> HostEnv:
    settings = settings or options.env()
    env: dict[str, str] = {}
    ca = find_ca_bundle(settings) if use_ca and not settings.no_host_ca else None
    if ca is not None:
        env.update({var: CONTAINER_CA_PATH for var in CA_ENV_VARS})
    for var in PROXY_VARS:
        for name in (var, var.lower()):
            if settings.proxies.get(name):
                env[name] = settings.proxies[name]
    # pip settings worth passing on; file:// indexes are host paths and are not.
    for var, value in settings.pip.items():
        if not value.startswith("file:"):
            env[var] = value
    return HostEnv(ca_bundle=ca, env=env)
