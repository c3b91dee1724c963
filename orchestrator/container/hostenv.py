"""What containers inherit from the host: its CA bundle and its proxy settings.

Behind a TLS-intercepting proxy (corporate networks, and this project's own CI machine)
pip inside a container only reaches the package index when it trusts the host's CA
bundle. orch mounts the bundle read-only and points every usual variable at it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.container.engine import Mount

CONTAINER_CA_PATH = "/etc/orch/host-ca-bundle.crt"
CA_ENV_VARS = (
    "PIP_CERT",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
# pip settings worth passing on; file:// indexes are host paths and are not.
PIP_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/cert.pem",
)


@dataclass(frozen=True)
class HostEnv:
    ca_bundle: Path | None
    env: dict[str, str]

    @property
    def mounts(self) -> list[Mount]:
        if self.ca_bundle is None:
            return []
        return [Mount(str(self.ca_bundle), CONTAINER_CA_PATH, read_only=True)]


def find_ca_bundle() -> Path | None:
    """ORCH_CA_BUNDLE, then the variables tools already honour, then the usual paths."""
    for var in ("ORCH_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"):
        value = os.environ.get(var)
        if value and Path(value).is_file():
            return Path(value).resolve()
    for candidate in CA_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def host_env(use_ca: bool = True) -> HostEnv:
    env: dict[str, str] = {}
    ca = find_ca_bundle() if use_ca and os.environ.get("ORCH_NO_HOST_CA") != "1" else None
    if ca is not None:
        env.update({var: CONTAINER_CA_PATH for var in CA_ENV_VARS})
    for var in PROXY_VARS:
        for name in (var, var.lower()):
            if os.environ.get(name):
                env[name] = os.environ[name]
    for var in PIP_VARS:
        value = os.environ.get(var)
        if value and not value.startswith("file:"):
            env[var] = value
    return HostEnv(ca_bundle=ca, env=env)
