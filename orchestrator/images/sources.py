"""Does the package mirror serve a Debian source package? Probed once, then cached.

A source-built interpreter (`source_pythons` in images/local/<suite>.yaml) is compiled
from what `apt-get source` downloads from the mirror the image roots are made from
(debootstrap's default mirror, `debootstrap_mirror`). A mirror may carry a suite's Sources
index and only part of its pool; the compile would then fail at the download. So the plan
asks first: the suite's Sources index names the package's files (streamed, only the
package's stanza kept), then one HEAD per file says whether the pool serves it.

The answer is cached per mirror, suite and package, with the version it was for: a
"served" answer for a week, a "not served" one for a day (a mirror catching up should not
wait long). A probe that fails (network error, a 5xx) is reported as failed, never cached.
Offline, nothing is asked: the cached answer, however old, else "unknown".

This sits with definition.py in the reference-data layer (no engine, no later stage):
the plan gets a `SourceChecks` passed in and never starts a request on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import re
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from orchestrator import options
from orchestrator.images import definition
from orchestrator.util import paths

DEBOOTSTRAP_SCRIPT = Path("/usr/sbin/debootstrap")  # its DEF_MIRROR is the roots' mirror
SERVED, UNSERVED, FAILED, UNKNOWN = "served", "unserved", "failed", "unknown"
SERVED_TTL = 7 * 86400.0
UNSERVED_TTL = 86400.0
TIMEOUT = (5.0, 20.0)  # connect, read: a mirror that does not answer costs the plan 5 s
RECHECK_HINT = "re-check: orch images list --recheck"
# Sources.gz first: it decompresses 3x faster than .xz here and is only 35% bigger.
INDEX_NAMES = ("Sources.gz", "Sources.xz")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class SourceCheck:
    """One answer: does `mirror` serve `package`'s source as `suite`'s index names it?"""

    suite: str
    package: str
    state: str  # served | unserved | failed | unknown
    mirror: str = ""
    version: str = ""  # the index's version, e.g. 3.14.8-1
    url: str = ""  # what was asked last: the file not served, or the index
    status: int | None = None  # its HTTP status
    checked: float = 0.0  # when (epoch seconds)
    detail: str = ""  # why it failed, or why it is unknown
    cached: bool = False  # read from the cache

    @property
    def excludes(self) -> bool:
        """Only a definite "not served" keeps a job out: a failed or skipped probe plans it
        (with a warning), so a network blip never silently drops wheels."""
        return self.state == UNSERVED

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.checked))

    def reason(self) -> str:
        """Why the plan excludes a job of this source (state unserved)."""
        what = f"{self.package} {self.version}".strip()
        return (
            f"the package mirror does not serve the source of {what} (Debian {self.suite}): "
            f"{self.url} answered {self.status}, checked {self.when()}"
            f"{' (cached)' if self.cached else ''}; {RECHECK_HINT}"
        )

    def note(self) -> str:
        """For a failed or unknown check: the plan keeps the jobs and says this."""
        what = f"{self.package} source (Debian {self.suite})"
        if self.state == FAILED:
            why = f"could not check whether the package mirror serves {what}: {self.detail}"
        else:
            why = f"did not check whether the package mirror serves {what}: {self.detail}"
        return (
            f"{why}; its jobs are planned as the image definition lists them (compiling "
            f"fails at the download if the source is not served); {RECHECK_HINT}"
        )

    def summary(self) -> str:
        """One cell of `orch images list`."""
        if self.state in (SERVED, UNSERVED):
            word = "served" if self.state == SERVED else f"not served ({self.status})"
            return f"{word}, {self.when()}{' (cached)' if self.cached else ''}"
        return f"{self.state}: {self.detail}"


# (suite, package) -> its answer; what the plan is given.
SourceChecks = Callable[[str, str], SourceCheck]


def debootstrap_mirror(script: Path | None = None) -> str | None:
    """debootstrap's default mirror (DEF_MIRROR in its script): the roots' mirror, so the
    one `apt-get source` downloads from in the CPython builder."""
    try:
        text = (script or DEBOOTSTRAP_SCRIPT).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("DEF_MIRROR="):
            return line.split("=", 1)[1].strip().strip("\"'") or None
    return None


@dataclass(frozen=True)
class Prober:
    """Answers `SourceChecks` for one mirror; a suite's index is read once for every
    package of `interest` in it (3.14 and 3.15 share forky's), answers kept per process."""

    mirror: str | None
    offline: bool = False
    recheck: bool = False  # ignore cached answers (they are replaced)
    interest: frozenset[tuple[str, str]] = frozenset()
    now: Callable[[], float] = time.time
    cache: Path | None = None  # default: <orch cache>/images/source-probes
    _seen: dict[tuple[str, str], SourceCheck] = field(default_factory=dict, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def __call__(self, suite: str, package: str) -> SourceCheck:
        with self._lock:
            if (suite, package) not in self._seen:
                self._seen.update(self._answer(suite, package))
            return self._seen[suite, package]

    def _answer(self, suite: str, package: str) -> dict[tuple[str, str], SourceCheck]:
        if self.mirror is None:
            why = f"no Debian mirror known (no DEF_MIRROR in {DEBOOTSTRAP_SCRIPT})"
            return {(suite, package): SourceCheck(suite, package, UNKNOWN, detail=why)}
        cached = _read(self._path(suite, package))
        if cached is not None and (self.offline or (not self.recheck and self._fresh(cached))):
            return {(suite, package): cached}
        if self.offline:
            why = "offline, and no answer cached"
            return {(suite, package): SourceCheck(suite, package, UNKNOWN, self.mirror, detail=why)}
        down = next(
            (c for c in self._seen.values() if c.state == FAILED and c.status is None), None
        )
        if down is not None:  # unreachable a moment ago: one timeout per run, not per suite
            why = f"not asked (the mirror was unreachable a moment ago: {down.detail})"
            return {(suite, package): SourceCheck(suite, package, FAILED, self.mirror, detail=why)}
        wanted = {package} | {p for s, p in self.interest if s == suite}
        found = probe_suite(self.mirror, suite, sorted(wanted), self.now)
        for name, check in found.items():
            if check.state in (SERVED, UNSERVED):
                _write(self._path(suite, name), check)
            else:  # a failed probe is never cached; an expired answer is only mentioned
                found[name] = self._with_last(check)
        return {(suite, p): c for p, c in found.items()}

    def _with_last(self, failed: SourceCheck) -> SourceCheck:
        last = _read(self._path(failed.suite, failed.package))
        if last is None:
            return failed
        detail = f"{failed.detail}; last answer (expired): {last.summary()}"
        return SourceCheck(**{**asdict(failed), "detail": detail})

    def _fresh(self, check: SourceCheck) -> bool:
        ttl = SERVED_TTL if check.state == SERVED else UNSERVED_TTL
        return 0 <= self.now() - check.checked < ttl

    def _path(self, suite: str, package: str) -> Path:
        assert self.mirror is not None
        root = self.cache or paths.cache_dir() / "images" / "source-probes"
        mirror_id = hashlib.sha256(self.mirror.encode()).hexdigest()[:16]
        return root / mirror_id / f"{suite}_{package}.json"


def for_host(offline: bool = False, recheck: bool = False) -> Prober | None:
    """The prober of this machine's mirror, for every source the definitions name; None
    when ORCH_SOURCE_PROBE=0 (plan every source-built interpreter, ask nothing)."""
    settings = options.env()
    if not settings.source_probe:
        return None
    mirror = debootstrap_mirror()
    return Prober(
        mirror.rstrip("/") if mirror else None,
        offline=offline or settings.offline,
        recheck=recheck,
        interest=frozenset(named_sources()),
    )


def named_sources() -> list[tuple[str, str]]:
    """(suite, package) of every source-built interpreter the image definitions list."""
    found = {
        (src.suite, src.package)
        for name in definition.available_suites()
        for src in definition.load_suite(name).source_pythons.values()
    }
    return sorted(found)


# --- the probe ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stanza:
    version: str
    directory: str
    files: tuple[str, ...]


def probe_suite(
    mirror: str, suite: str, packages: list[str], now: Callable[[], float] = time.time
) -> dict[str, SourceCheck]:
    """Every package's answer from one read of the suite's Sources index."""
    with requests.Session() as session:
        try:
            url, stanzas = _read_index(session, mirror, suite, set(packages))
        except _Answer as exc:
            return {p: exc.check(suite, p, mirror, now()) for p in packages}
        return {
            p: _probe_files(session, mirror, suite, p, stanzas.get(p), url, now) for p in packages
        }


class _Answer(Exception):
    """The index settles every package at once: not there (404), or unreadable."""

    def __init__(self, state: str, url: str, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.state, self.url, self.status, self.detail = state, url, status, detail

    def check(self, suite: str, package: str, mirror: str, when: float) -> SourceCheck:
        return SourceCheck(
            suite, package, self.state, mirror, "", self.url, self.status, when, self.detail
        )


def _read_index(
    session: requests.Session, mirror: str, suite: str, wanted: set[str]
) -> tuple[str, dict[str, _Stanza]]:
    status = None
    for name in INDEX_NAMES:
        url = f"{mirror}/dists/{suite}/main/source/{name}"
        try:
            with session.get(url, stream=True, timeout=TIMEOUT) as resp:
                status = resp.status_code
                if status == 200:
                    return url, _newest(_stanzas(_decompressed(resp, name), wanted))
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,  # resp.raw.stream is urllib3's, not wrapped
            zlib.error,
            lzma.LZMAError,
            OSError,
            EOFError,
        ) as exc:
            raise _Answer(FAILED, url, None, f"{url}: {_short(exc)}") from exc
        if status not in (404, 410):
            raise _Answer(FAILED, url, status, f"{url} answered {status}")
    detail = f"the mirror has no Sources index for {suite}"
    raise _Answer(UNSERVED, url, status, detail)


def _decompressed(resp: requests.Response, name: str) -> Iterator[bytes]:
    unpack: Any = (
        lzma.LZMADecompressor() if name.endswith(".xz") else zlib.decompressobj(16 + zlib.MAX_WBITS)
    )
    for chunk in resp.raw.stream(1 << 16, decode_content=False):
        yield unpack.decompress(chunk)
    # Only reached after the whole body was read: a body cut short without a
    # Content-Length must fail the probe, not read as "the index lists no such package".
    if not unpack.eof:
        raise EOFError(f"{resp.url}: the index ended before its compressed stream did")


def _stanzas(chunks: Iterable[bytes], wanted: set[str]) -> Iterator[tuple[str, str]]:
    """(package, stanza text) of the wanted packages. Debian's index is sorted by package
    name: once every wanted one is found and passed, the download stops (unless the index
    was seen unsorted). A package not listed costs the whole index."""
    last = max(wanted)
    previous, ordered, seen, rest = "", True, set(), b""
    for chunk in chunks:
        *whole, rest = (rest + chunk).split(b"\n\n")
        for raw in whole:
            name = _package_of(raw)
            ordered = ordered and name >= previous
            previous = name
            if name in wanted:
                seen.add(name)
                yield name, raw.decode(errors="replace")
            elif ordered and name > last and seen == wanted:
                return
    if rest.strip() and _package_of(rest) in wanted:
        yield _package_of(rest), rest.decode(errors="replace")


def _package_of(raw: bytes) -> str:
    match = re.search(rb"^Package: *(\S+)", raw, re.MULTILINE)
    return match.group(1).decode() if match else ""


def _newest(found: Iterable[tuple[str, str]]) -> dict[str, _Stanza]:
    """Each package's stanza of the highest version: what `apt-get source` picks."""
    best: dict[str, _Stanza] = {}
    for name, text in found:
        stanza = _parse(text)
        if stanza and (
            name not in best or compare_versions(stanza.version, best[name].version) > 0
        ):
            best[name] = stanza
    return best


def _parse(text: str) -> _Stanza | None:
    fields: dict[str, list[str]] = {}
    key = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key].append(line.strip())
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = [value.strip()]
    files = fields.get("Checksums-Sha256") or fields.get("Files") or []
    names = tuple(f.split()[-1] for f in files if len(f.split()) >= 3)
    if not names or "Version" not in fields or "Directory" not in fields:
        return None
    # the .dsc and the upstream tarball first: the usual missing ones
    order = sorted(names, key=lambda n: (not n.endswith(".dsc"), ".orig.tar." not in n))
    return _Stanza(fields["Version"][0], fields["Directory"][0], tuple(order))


def _probe_files(
    session: requests.Session,
    mirror: str,
    suite: str,
    package: str,
    stanza: _Stanza | None,
    index_url: str,
    now: Callable[[], float],
) -> SourceCheck:
    if stanza is None:
        why = f"Debian {suite}'s Sources index lists no {package}"
        return SourceCheck(suite, package, UNSERVED, mirror, "", index_url, 200, now(), why)
    url = ""
    for name in stanza.files:
        url = f"{mirror}/{stanza.directory}/{name}"
        try:
            status = _head(session, url)
        except requests.RequestException as exc:
            detail = f"{url}: {_short(exc)}"
            return SourceCheck(
                suite, package, FAILED, mirror, stanza.version, url, None, now(), detail
            )
        if status in (404, 410):
            return SourceCheck(suite, package, UNSERVED, mirror, stanza.version, url, status, now())
        if status != 200:
            detail = f"{url} answered {status}"
            return SourceCheck(
                suite, package, FAILED, mirror, stanza.version, url, status, now(), detail
            )
    return SourceCheck(suite, package, SERVED, mirror, stanza.version, url, 200, now())


def _head(session: requests.Session, url: str) -> int:
    resp = session.head(url, timeout=TIMEOUT, allow_redirects=True)
    if resp.status_code in (405, 501):  # no HEAD: the first byte instead
        with session.get(url, headers={"Range": "bytes=0-0"}, stream=True, timeout=TIMEOUT) as got:
            return 200 if got.status_code in (200, 206) else got.status_code
    return resp.status_code


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


# --- Debian versions (dpkg's order) ---------------------------------------------------


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 as dpkg --compare-versions orders a and b: epoch, upstream, revision."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def _split_version(v: str) -> tuple[int, str, str]:
    epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def _order(c: str) -> int:
    if c == "~":
        return -1
    if not c or c.isdigit():
        return 0
    return ord(c) if c.isalpha() else ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac, bc = _order(a[i : i + 1]), _order(b[j : j + 1])
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        na = re.match(r"\d*", a[i:])
        nb = re.match(r"\d*", b[j:])
        da, db = (na.group() if na else ""), (nb.group() if nb else "")
        if int(da or 0) != int(db or 0):
            return int(da or 0) - int(db or 0)
        i, j = i + len(da), j + len(db)
    return 0


# --- the cache ------------------------------------------------------------------------


def _read(path: Path) -> SourceCheck | None:
    try:
        data: Mapping[str, Any] = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT:
            return None
        fields = {k: data[k] for k in SourceCheck.__dataclass_fields__ if k in data}
        check = SourceCheck(**fields)
    except (OSError, ValueError, TypeError):
        return None
    if check.state not in (SERVED, UNSERVED):
        return None
    return SourceCheck(**{**asdict(check), "cached": True})


def _write(path: Path, check: SourceCheck) -> None:
    """Atomically (a temporary name, then a rename): a reader never sees half an answer.
    A cache that cannot be written only costs a probe next time."""
    record = {**asdict(check), "cached": False, "format": CACHE_FORMAT}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, indent=2)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
