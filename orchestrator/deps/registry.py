"""Share dependency cache entries through an OCI registry (Distribution API v2).

One entry is one OCI image manifest tagged with the cache key: the artifact tarball is its
only layer and ``meta.json`` its config blob (ORAS-style artifacts; any v2 registry that
accepts OCI manifests works). Everything pulled is verified by digest before it is
handed to :meth:`DepCache.store`, which verifies again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import re
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from orchestrator import options
from orchestrator.deps.cache import (
    ARTIFACT,
    META,
    DepCache,
    check_artifact_tree,
    check_key,
)
from orchestrator.errors import ConfigError, OrchError
from orchestrator.util.redact import redact

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.orch.dependency.v1"
CONFIG_TYPE = "application/vnd.orch.dependency.meta.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ENV_USER = options.REGISTRY_USER
ENV_PASSWORD = options.REGISTRY_PASSWORD
ENV_AUTH_HOST = options.CACHE_AUTH_HOST  # a token service on another host, trusted by name
REGISTRY_ENV = options.CACHE_REGISTRY  # e.g. 127.0.0.1:5000
REPOSITORY_ENV = options.CACHE_REPOSITORY
TIMEOUT = (10.0, 60.0)  # (connect, between bytes): a registry this slow is down
_MAX_SMALL = 4 << 20  # manifests and meta blobs are tiny; refuse to buffer more
_CHUNK = 1 << 16
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


class RegistryError(OrchError):
    """The registry refused, failed, or served something that does not verify."""


class RegistryUnreachable(RegistryError):
    """No answer at all (refused, dropped, timed out): asking again will not help soon."""


def _noop(_: str) -> None:
    pass


# --- addressing and auth ------------------------------------------------------------


def normalize_registry_url(url: str) -> str:
    """``host[:port]`` or a URL -> base URL; a bare loopback host means plain HTTP."""
    url = url.strip().rstrip("/")
    if not url:
        raise ConfigError("empty registry URL")
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"registry URL {url!r}: only http:// and https:// are supported")
        return url
    host = urllib.parse.urlsplit(f"//{url}").hostname or ""
    return f"{'http' if _is_loopback(host) else 'https'}://{url}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_from_env() -> tuple[str, str] | None:
    settings = options.env()
    return (settings.registry_user, settings.registry_password) if settings.registry_user else None


def auth_host_from_env() -> str | None:
    """The one other host registry credentials may be sent to (its token service)."""
    return options.env().cache_auth_host


def registry_from_env() -> str | None:
    """The OCI registry shared as a dependency cache, if configured (CI runners share it)."""
    return options.env().cache_registry


def repository_from_env() -> str | None:
    return options.env().cache_repository


def default_repository(project: str) -> str:
    """``orch/deps/<project>``: one repository per project, so projects sharing a registry
    never share (or overwrite) each other's entries."""
    component = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project"
    return f"orch/deps/{component}"


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {realm:..., service:...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


# --- the client ---------------------------------------------------------------------


@dataclass
class _Body:
    """A request body that can be sent again (after an auth challenge)."""

    data: bytes | None = None
    path: Path | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        if self.path is not None:
            with self.path.open("rb") as f:
                yield f
        else:
            yield self.data


class RegistryClient:
    """Distribution API v2 calls for one repository, with Basic or Bearer token auth."""

    def __init__(
        self,
        registry_url: str,
        repository: str,
        *,
        auth: tuple[str, str] | None = None,
        log: Callable[[str], None] = _noop,
    ) -> None:
        if not _REPO_RE.match(repository):
            raise ConfigError(f"{repository!r} is not a valid registry repository name")
        self.base = normalize_registry_url(registry_url)
        self.repo = repository
        self.auth = auth
        self.log = log
        self.session = requests.Session()  # honours proxies and REQUESTS_CA_BUNDLE
        self._authorization: str | None = None

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repo}/{path}"

    # -- plumbing --

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: _Body | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One call, answering a 401 challenge once (auth is per scope, so per call)."""
        resp = self._send(method, url, headers, body, stream)
        if resp.status_code == 401 and not self._same_host(resp.url or url):
            resp.close()
            raise RegistryError(
                f"registry {self.base}: {redact(url)} on another host asks for credentials; "
                "not sending them"
            )
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            self._authenticate(challenge)
            resp = self._send(method, url, headers, body, stream)
            if resp.status_code == 401:
                resp.close()
                raise RegistryError(f"{self.base}: credentials rejected for {method} {url}")
        return resp

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: _Body | None,
        stream: bool,
    ) -> requests.Response:
        hdrs = dict(headers or {})
        if self._authorization and self._same_host(url):
            hdrs["Authorization"] = self._authorization
        try:
            with (body or _Body()).open() as data:
                return self.session.request(
                    method, url, headers=hdrs, data=data, stream=stream, timeout=TIMEOUT
                )
        except requests.RequestException as exc:
            raise RegistryUnreachable(f"registry {self.base} unreachable: {exc}") from exc
        except OSError as exc:  # reading the body to send
            raise RegistryError(f"cannot send {redact(url)}: {exc}") from exc

    def _authenticate(self, challenge: str) -> None:
        scheme, params = _parse_challenge(challenge)
        if self.auth is None:
            raise RegistryError(
                f"registry {self.base} requires authentication; set {ENV_USER} and {ENV_PASSWORD}"
            )
        if scheme == "basic":
            self._authorization = _basic(self.auth)
        elif scheme == "bearer" and params.get("realm"):
            self._authorization = f"Bearer {self._token(params)}"
        else:
            raise RegistryError(f"registry {self.base}: unsupported auth challenge {challenge!r}")

    def _check_realm(self, realm: str) -> None:
        """Credentials go only to https on the registry's own host or the configured auth
        host; plain http only when the registry itself is plain http on loopback."""
        base = urllib.parse.urlsplit(self.base)
        target = urllib.parse.urlsplit(realm)
        host = (target.hostname or "").lower()
        allowed = {(base.hostname or "").lower(), auth_host_from_env() or ""} - {""}
        if host not in allowed:
            raise RegistryError(
                f"registry {self.base}: refusing to send credentials to the token service "
                f"{redact(realm)} on another host (set {ENV_AUTH_HOST}={host} to trust it)"
            )
        plain_ok = base.scheme == "http" and _is_loopback(base.hostname or "")
        if target.scheme != "https" and not (target.scheme == "http" and plain_ok):
            raise RegistryError(
                f"registry {self.base}: refusing to send credentials to the token service "
                f"{redact(realm)} over {target.scheme or 'no scheme'} (https is required)"
            )

    def _same_host(self, url: str) -> bool:
        """Same scheme, host and port as the registry (userinfo aside)."""
        return _origin(self.base) == _origin(url)

    def _token(self, params: Mapping[str, str]) -> str:
        self._check_realm(params["realm"])
        query = {k: params[k] for k in ("service", "scope") if k in params}
        if "scope" not in query:
            query["scope"] = f"repository:{self.repo}:pull,push"
        assert self.auth is not None
        try:
            resp = self.session.get(
                params["realm"],
                params=query,
                headers={"Authorization": _basic(self.auth)},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise RegistryUnreachable(
                f"token service {params['realm']} unreachable: {exc}"
            ) from exc
        if resp.status_code != 200:
            raise RegistryError(f"token service {params['realm']}: HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError:
            raise RegistryError(f"token service {params['realm']} did not answer JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service {params['realm']} returned no token")
        return token

    # -- blobs --

    def blob_exists(self, digest: str) -> bool:
        resp = self.request("HEAD", self.url(f"blobs/{digest}"))
        resp.close()
        return resp.status_code == 200

    def upload_blob(self, digest: str, size: int, body: _Body) -> None:
        """Monolithic upload: POST to open a session, PUT the bytes with the digest."""
        if self.blob_exists(digest):
            return
        resp = self.request("POST", self.url("blobs/uploads/"))
        resp.close()
        _expect(resp, (202,), "start blob upload")
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.base}: upload started without a Location")
        put_url = _with_query(urllib.parse.urljoin(self.base + "/", location), digest=digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        resp = self.request("PUT", put_url, headers=headers, body=body)
        resp.close()
        _expect(resp, (201,), f"upload blob {digest}")

    def read_blob(self, digest: str, max_size: int = _MAX_SMALL) -> bytes:
        resp = self.request("GET", self.url(f"blobs/{digest}"), stream=True)
        with resp:
            _expect(resp, (200,), f"fetch blob {digest}")
            data = _read_bounded(resp, max_size)
        _check_digest(data, digest, "blob")
        return data

    def download_blob(self, digest: str, size: int, dest: Path) -> None:
        """Stream a blob to ``dest``, checking size and digest as it arrives."""
        algo, _, want = digest.partition(":")
        if algo != "sha256":
            raise RegistryError(f"unsupported digest algorithm in {digest}")
        h, n = hashlib.sha256(), 0
        resp = self.request("GET", self.url(f"blobs/{digest}"), stream=True)
        with resp, dest.open("wb") as out:
            _expect(resp, (200,), f"fetch blob {digest}")
            for chunk in resp.iter_content(_CHUNK):
                n += len(chunk)
                if n > size:
                    raise RegistryError(f"blob {digest} is larger than its manifest says")
                h.update(chunk)
                out.write(chunk)
        if n != size or h.hexdigest() != want:
            raise RegistryError(f"blob {digest} does not verify (got sha256:{h.hexdigest()})")

    # -- manifests --

    def put_manifest(self, tag: str, manifest: bytes) -> str:
        resp = self.request(
            "PUT",
            self.url(f"manifests/{tag}"),
            headers={"Content-Type": MANIFEST_TYPE},
            body=_Body(data=manifest),
        )
        resp.close()
        _expect(resp, (201,), f"push manifest {tag}")
        return resp.headers.get("Docker-Content-Digest") or _digest(manifest)

    def get_manifest(self, tag: str) -> bytes | None:
        """The manifest bytes, verified against the registry's digest; None if unknown."""
        resp = self.request(
            "GET", self.url(f"manifests/{tag}"), headers={"Accept": MANIFEST_TYPE}, stream=True
        )
        with resp:
            if resp.status_code == 404:
                return None
            _expect(resp, (200,), f"fetch manifest {tag}")
            data = _read_bounded(resp, _MAX_SMALL)
            claimed = resp.headers.get("Docker-Content-Digest")
        if claimed:
            _check_digest(data, claimed, "manifest")
        return data


# --- push / pull --------------------------------------------------------------------


def push(
    cache: DepCache,
    key: str,
    registry_url: str,
    repository: str,
    *,
    auth: tuple[str, str] | None = None,
    log: Callable[[str], None] = _noop,
) -> str:
    """Upload the verified local entry ``key``; returns the manifest digest."""
    check_key(key)
    artifact = cache.lookup(key)
    if artifact is None:
        raise RegistryError(f"cache entry {key[:12]} is not in the local cache")
    meta_bytes = (artifact.parent / META).read_bytes()
    meta = json.loads(meta_bytes)
    client = RegistryClient(registry_url, repository, auth=auth or credentials_from_env(), log=log)
    try:
        layer_digest, layer_size = f"sha256:{meta['sha256']}", int(meta["size"])
        config_digest = _digest(meta_bytes)
        manifest = _manifest(
            meta,
            {"digest": config_digest, "size": len(meta_bytes)},
            {"digest": layer_digest, "size": layer_size},
        )
        existing = _existing(client, key, manifest, layer_digest, log)
        if existing is not None:
            return existing
        client.upload_blob(config_digest, len(meta_bytes), _Body(data=meta_bytes))
        client.upload_blob(layer_digest, layer_size, _Body(path=artifact))
        digest = client.put_manifest(key, manifest)
    finally:
        client.close()
    log(
        f"pushed {meta.get('name', '?')} {meta.get('version', '')} ({key[:12]}) to "
        f"{redact(client.base)}/{repository}"
    )
    return digest


def _existing(
    client: RegistryClient,
    key: str,
    manifest: bytes,
    layer_digest: str,
    log: Callable[[str], None],
) -> str | None:
    """The digest of the tag already in the registry, if there is one: a tag is never
    overwritten (identical content: nothing to do; different: the remote one is kept)."""
    raw = client.get_manifest(key)
    if raw is None:
        return None
    remote = _digest(raw)
    if raw == manifest:
        log(f"registry already holds {key[:12]} ({remote}); not pushing")
        return remote
    _config, layer = _parse_manifest(raw, key)  # garbage: a fault, not another artifact
    if layer["digest"] == layer_digest:
        log(f"registry already holds the same artifact for {key[:12]} ({remote}); not pushing")
    else:
        log(
            f"warning: registry tag {key[:12]} holds a different artifact ({remote}); "
            "keeping the remote one, not overwriting it"
        )
    return remote


def pull(
    cache: DepCache,
    key: str,
    registry_url: str,
    repository: str,
    *,
    auth: tuple[str, str] | None = None,
    log: Callable[[str], None] = _noop,
) -> Path | None:
    """Fetch entry ``key`` into ``cache``; its artifact path, or None if the tag is absent."""
    check_key(key)
    local = cache.lookup(key)
    if local is not None:
        return local
    client = RegistryClient(registry_url, repository, auth=auth or credentials_from_env(), log=log)
    try:
        raw = client.get_manifest(key)
        if raw is None:
            return None
        config, layer = _parse_manifest(raw, key)
        meta = _parse_meta(client.read_blob(config["digest"]), key, layer)
        path = _download_and_store(client, cache, key, layer, meta)
    finally:
        client.close()
    log(
        f"pulled {meta.get('name', '?')} {meta.get('version', '')} ({key[:12]}) from "
        f"{redact(client.base)}/{repository}"
    )
    return path


def _download_and_store(
    client: RegistryClient,
    cache: DepCache,
    key: str,
    layer: Mapping[str, Any],
    meta: dict[str, Any],
) -> Path:
    tmp_root = cache.deps / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="pull-") as tmp:
        artifact = Path(tmp) / ARTIFACT
        client.download_blob(layer["digest"], int(layer["size"]), artifact)
        problem = check_artifact_tree(artifact)
        if problem:
            raise RegistryError(f"pulled entry {key[:12]} rejected: {problem}")
        return cache.store(key, artifact, meta)


# --- as a cache: faults are misses ----------------------------------------------------


_unreachable: set[str] = set()  # registries that did not answer in this process
_unreachable_lock = threading.Lock()


def pull_or_miss(
    cache: DepCache, key: str, project: str, log: Callable[[str], None]
) -> Path | None:
    """The configured registry's entry for ``key``, or None: a registry or disk fault of
    any kind is a warning in the log and a miss, never a failure (a cache is an
    optimisation)."""
    url = _usable_registry(log)
    if url is None:
        return None
    try:
        return pull(cache, key, url, repository_from_env() or default_repository(project), log=log)
    except Exception as exc:
        _note_fault(url, exc)
        log(
            f"[orch] warning: registry cache unavailable, treating {key[:12]} as a miss: "
            f"{redact(_describe(exc))}"
        )
        return None


def push_or_warn(cache: DepCache, key: str, project: str, log: Callable[[str], None]) -> None:
    """Share ``key`` through the configured registry; any fault is only a warning."""
    url = _usable_registry(log)
    if url is None:
        return
    try:
        push(cache, key, url, repository_from_env() or default_repository(project), log=log)
    except Exception as exc:
        _note_fault(url, exc)
        log(
            f"[orch] warning: could not push {key[:12]} to the registry cache: "
            f"{redact(_describe(exc))}"
        )


def _usable_registry(log: Callable[[str], None]) -> str | None:
    """The configured registry, unless it already failed to answer in this process: one
    stalled registry must not cost every dependency a full timeout."""
    url = registry_from_env()
    if url is None:
        return None
    with _unreachable_lock:
        down = url in _unreachable
    if down:
        log(f"[orch] warning: skipping the registry cache {redact(url)}: it did not answer earlier")
        return None
    return url


def _note_fault(url: str, exc: BaseException) -> None:
    if isinstance(exc, RegistryUnreachable):
        with _unreachable_lock:
            _unreachable.add(url)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, OrchError) else f"{type(exc).__name__}: {exc}"


# --- documents ----------------------------------------------------------------------


def _manifest(
    meta: Mapping[str, Any], config: Mapping[str, Any], layer: Mapping[str, Any]
) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, **config},
        "layers": [
            {
                "mediaType": LAYER_TYPE,
                **layer,
                "annotations": {"org.opencontainers.image.title": ARTIFACT},
            }
        ],
        "annotations": {
            "io.orch.dependency.name": str(meta.get("name", "")),
            "io.orch.dependency.version": str(meta.get("version", "")),
            "io.orch.cache.key": str(meta["key"]),
        },
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _parse_manifest(raw: bytes, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config descriptor, layer descriptor) of an orch manifest; anything else is refused."""
    try:
        doc = json.loads(raw)
        config, layers = doc["config"], doc["layers"]
        ok = (
            isinstance(config, dict)
            and config.get("mediaType") == CONFIG_TYPE
            and isinstance(layers, list)
            and len(layers) == 1
            and isinstance(layers[0], dict)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"manifest for {key[:12]} is not valid JSON ({exc})") from exc
    if not ok:
        raise RegistryError(f"manifest for {key[:12]} is not an orch cache entry")
    layer = layers[0]
    for desc in (config, layer):
        if not isinstance(desc.get("digest"), str) or not isinstance(desc.get("size"), int):
            raise RegistryError(f"manifest for {key[:12]} has a malformed descriptor")
    return config, layer


def _parse_meta(raw: bytes, key: str, layer: Mapping[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise RegistryError(f"meta of {key[:12]} is not JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("key") != key:
        raise RegistryError(f"meta of {key[:12]} names another key: {meta!r:.200}")
    if f"sha256:{meta.get('sha256')}" != layer["digest"] or meta.get("size") != layer["size"]:
        raise RegistryError(f"meta of {key[:12]} disagrees with its manifest's layer")
    return meta


# --- small helpers ------------------------------------------------------------------


def _basic(auth: tuple[str, str]) -> str:
    user, password = auth
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _check_digest(data: bytes, digest: str, what: str) -> None:
    algo, _, want = digest.partition(":")
    if algo != "sha256":
        raise RegistryError(f"unsupported digest algorithm in {digest}")
    if hashlib.sha256(data).hexdigest() != want:
        raise RegistryError(f"{what} does not match its digest {digest}")


def _read_bounded(resp: requests.Response, limit: int) -> bytes:
    out = bytearray()
    for chunk in resp.iter_content(_CHUNK):
        out += chunk
        if len(out) > limit:
            raise RegistryError(f"{resp.url}: response larger than {limit} bytes")
    return bytes(out)


def _expect(resp: requests.Response, codes: tuple[int, ...], what: str) -> None:
    if resp.status_code not in codes:
        detail = ""
        with contextlib.suppress(Exception):  # the body is only a hint; never mask the status
            detail = f": {resp.text.strip()[:300]}" if resp.text.strip() else ""
        raise RegistryError(f"{what} failed: HTTP {resp.status_code}{detail}")


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
