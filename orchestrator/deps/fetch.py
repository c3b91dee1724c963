"""Fetch a dependency's source archive into a content-addressed store, verified by sha256.

The store holds ``<store>/<sha256>/<filename>``; nothing lands there unless its hash
matches. Locations are tried in order: the user's mirrors first (they exist for a reason:
air-gapped hosts, slow upstreams), then the recipe's own URLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import string
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests

from orchestrator.errors import ConfigError, OrchError
from orchestrator.recipe.model import SourceSpec
from orchestrator.util.hashing import sha256_file

CHUNK = 1 << 16
TIMEOUT = (15.0, 120.0)  # (connect, read between bytes) seconds
TEMPLATE_FIELDS = frozenset({"sha256", "filename", "name"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class FetchError(OrchError):
    """No location yielded the expected archive."""


class _Failed(Exception):
    """One location failed; the reason is the message (collected, never shown alone)."""


@dataclass(frozen=True)
class Location:
    url: str  # http(s)://, file:// or a plain local path
    via: str  # "mirror #1 (template)", "recipe", ... for messages


# --- candidate locations ------------------------------------------------------------


def locations(
    src: SourceSpec, mirrors: Sequence[Mapping[str, str]], *, name: str | None = None
) -> list[Location]:
    """Every place to try, mirrors first then the recipe's URLs, without duplicates."""
    out: list[Location] = []
    for i, mirror in enumerate(mirrors, 1):
        out.extend(_mirror_locations(src, mirror, i, name))
    out.extend(Location(url, "recipe") for url in src.urls)
    unique: dict[str, Location] = {}
    for loc in out:
        unique.setdefault(loc.url, loc)
    return list(unique.values())


def _mirror_locations(
    src: SourceSpec, mirror: Mapping[str, str], index: int, name: str | None
) -> list[Location]:
    kind = _mirror_kind(mirror, index)
    via = f"mirror #{index} ({kind})"
    sha = src.sha256.lower()
    if kind == "template":
        url = _expand_template(mirror["template"], src, name, index)
        return [Location(url, via)] if url else []
    if kind == "directory":
        d = Path(mirror["directory"]).expanduser()
        paths = (d / sha, d / src.filename, d / sha / src.filename)
        return [Location(str(p), via) for p in paths]
    prefix, to = mirror["prefix"], mirror["to"]
    return [Location(to + u[len(prefix) :], via) for u in src.urls if u.startswith(prefix)]


def _mirror_kind(mirror: Mapping[str, str], index: int) -> str:
    keys = set(mirror)
    for kind, shape in (
        ("template", {"template"}),
        ("directory", {"directory"}),
        ("prefix", {"prefix", "to"}),
    ):
        if keys == shape and all(isinstance(mirror[k], str) and mirror[k] for k in shape):
            return kind
    raise ConfigError(
        f"mirror #{index} {dict(mirror)!r} has an unknown shape; use one of "
        "{template: URL with {sha256}/{filename}/{name}}, {directory: PATH}, "
        "or {prefix: URL, to: URL}"
    )


def _expand_template(template: str, src: SourceSpec, name: str | None, index: int) -> str:
    """The template with its placeholders filled; "" if it needs a name we don't have."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise ConfigError(
            f"mirror #{index} template {template!r} uses unknown placeholder(s) "
            f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(TEMPLATE_FIELDS))}"
        )
    if "name" in fields and not name:
        return ""
    return template.format(sha256=src.sha256.lower(), filename=src.filename, name=name or "")


# --- the store ----------------------------------------------------------------------


def store_path(src: SourceSpec, store: Path) -> Path:
    _check_spec(src)
    return store / src.sha256.lower() / src.filename


def _check_spec(src: SourceSpec) -> None:
    # The filename becomes a path component; refuse anything that could escape the store.
    if not _SHA256.match(src.sha256.lower()):
        raise ConfigError(f"source sha256 {src.sha256!r} is not 64 hex digits")
    name = src.filename
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ConfigError(f"source filename {name!r} must be a plain file name")


def fetch_source(
    src: SourceSpec,
    *,
    mirrors: Sequence[Mapping[str, str]],
    store: Path,
    log: Callable[[str], None],
    name: str | None = None,
) -> Path:
    """A verified ``store/<sha256>/<filename>``, downloading it if needed.

    ``name`` (the dependency's) fills a mirror template's ``{name}``; templates that need
    it are skipped without it.
    """
    target = store_path(src, store)
    expected = src.sha256.lower()
    candidates = locations(src, mirrors, name=name)  # first: a bad mirror is always reported
    if _verified_hit(target, expected, log):
        return target
    if not candidates:
        raise FetchError(f"{src.filename}: no URL and no mirror to fetch it from")
    failures: list[str] = []
    for loc in candidates:
        try:
            _download(loc.url, target, expected)
        except _Failed as exc:
            log(f"{src.filename}: {_redact(loc.url)} failed: {exc}")
            failures.append(f"  {_redact(loc.url)} [{loc.via}]: {exc}")
            continue
        log(f"{src.filename}: fetched from {_redact(loc.url)} (sha256 ok)")
        return target
    _remove_empty(target.parent)
    raise FetchError(
        f"could not fetch {src.filename} (sha256 {expected}) from any location:\n"
        + "\n".join(failures)
    )


def _verified_hit(target: Path, expected: str, log: Callable[[str], None]) -> bool:
    try:
        actual = sha256_file(target)
    except FileNotFoundError:
        return False
    if actual == expected:
        return True
    log(f"{target}: stored copy is corrupt (sha256 {actual}, expected {expected}); re-fetching")
    target.unlink(missing_ok=True)  # another process may have removed it already
    return False


def _remove_empty(d: Path) -> None:
    with contextlib.suppress(OSError):
        d.rmdir()


# --- one download -------------------------------------------------------------------


def _download(url: str, target: Path, expected: str) -> None:
    """Stream ``url`` into a temp file beside ``target``; keep it only if the hash matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _open(url) as stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        actual = h.hexdigest()
        if actual != expected:
            raise _Failed(f"sha256 mismatch: expected {expected}, got {actual}")
        os.replace(tmp, target)
    except OSError as exc:
        raise _Failed(_os_reason(exc)) from exc
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _open(url: str) -> Iterator[_Reader]:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        with _http_stream(url) as stream:
            yield stream
    elif scheme == "file":
        with _open_local(Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))) as f:
            yield f
    elif scheme == "":
        with _open_local(Path(url)) as f:
            yield f
    else:
        raise _Failed(f"unsupported URL scheme {scheme!r}")


@contextlib.contextmanager
def _open_local(path: Path) -> Iterator[_Reader]:
    if not path.is_file():
        raise _Failed("no such file")
    with path.open("rb") as f:
        yield f


@contextlib.contextmanager
def _http_stream(url: str) -> Iterator[_Reader]:
    # requests honours HTTP(S)_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE itself.
    # "identity": the hash is of the file as served, never of an on-the-fly (de)compression.
    try:
        resp = requests.get(
            url, stream=True, timeout=TIMEOUT, headers={"Accept-Encoding": "identity"}
        )
    except requests.RequestException as exc:
        raise _Failed(_request_reason(exc)) from exc
    with resp:
        if resp.status_code != 200:
            raise _Failed(f"HTTP {resp.status_code} {resp.reason or ''}".rstrip())
        resp.raw.decode_content = False  # a .tar.gz served with "Content-Encoding: gzip"
        yield _RawReader(resp)


class _RawReader:
    """A read(n) view of a response that turns transport errors into _Failed."""

    def __init__(self, resp: requests.Response) -> None:
        self._raw = resp.raw

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._raw.read(n)
        except Exception as exc:  # urllib3's own error types, not all OSError
            raise _Failed(f"transfer interrupted: {_request_reason(exc)}") from exc
        return data


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _request_reason(exc: BaseException) -> str:
    """A short reason ("Connection refused", "timed out") out of requests' nested message."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    m = _ERRNO_TEXT.search(text)
    if m:
        return m.group(1).strip().rstrip(".")
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host name not resolved"
    return f"{type(exc).__name__}: {text[:200]}"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _redact(url: str) -> str:
    """The URL without any password in it (mirror URLs may carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
