"""Source-built CPython interpreters: compiled once per (spec, source), kept as tarballs.

Each interpreter is compiled in a container of the CPython builder image
(``Dockerfile.cpython``, ``build-cpython.sh``) from the upstream tarball of a Debian source
package, then packed as a tarball of ``/opt/python/<tag>`` into the interpreter store,
keyed by its spec (builder definition, package, flags) and the source tarball's sha256.
A job image adds the tarballs it needs on top of the base (see `local.py`), so an
interpreter is compiled only when a job first needs it and never again while its key holds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from orchestrator import archs, options
from orchestrator.container import engine
from orchestrator.errors import OrchError
from orchestrator.images import definition
from orchestrator.images.definition import InterpreterPlan
from orchestrator.images.progress import Phases, Report
from orchestrator.util import paths, stoppers

ENV_INTERPRETER_DIR = options.INTERPRETER_DIR
SCRIPT = "/usr/local/lib/orch-image/build-cpython.sh"
NATIVE_PYC = "/usr/local/lib/orch-image/native-pyc.sh"
NATIVE_DIR = "/opt/orch-native"  # the host's interpreter of the same source, in the container
OUTPUT = "/tmp/orch-out/python.tar.gz"
LABEL_STEP = "io.orch.image-step"
# A compile's CPU weight (Docker's default is 1024): on a busy host the base image, the
# dependencies and the jobs that need no compiled interpreter go first (docs/images.md).
BACKGROUND_CPU_SHARES = 256

# Interpreters this process has built or found (spec digest -> result).
_seen: dict[str, Built] = {}
_seen_lock = threading.Lock()


@dataclass(frozen=True)
class CompileAid:
    """Mounts and environment that make compiling in an emulated container faster (the
    native cross compiler: emulation/accel.py provides it; images may not import it)."""

    mounts: tuple[engine.Mount, ...]
    env: Mapping[str, str]
    description: str


# (architecture, builder image) -> an aid, or None for plain emulation.
Accelerator = Callable[[str, engine.ImageInfo, Report], CompileAid | None]


# Called only when an emulated interpreter is compiled, with its source: the host's
# interpreter of the same tag and source (compiled first when missing), or None.
NativePython = Callable[["Source"], "Built | None"]


@dataclass(frozen=True)
class Remote:
    """Where a missing interpreter is fetched from before compiling, and a compiled one is
    shared with (the orch cache and the OCI registry cache: deps/pythons.py; images may
    not import deps)."""

    fetch: Callable[[str, Path, Report], bool]  # (key, destination, log) -> got it
    share: Callable[[str, Path, Mapping[str, Any], Report], None]  # (key, tarball, record, log)


@dataclass(frozen=True)
class Source:
    file: str  # python3.13_3.13.5.orig.tar.xz
    sha256: str
    version: str  # the Debian version: 3.13.5-2+deb13u5


@dataclass(frozen=True)
class Built:
    tag: str
    arch: str
    path: Path
    source: Source
    status: str  # "built" | "cached" | "pulled" (from the orch or registry cache)
    seconds: float  # compile time (when built) or the recorded one (when cached)


def store_dir() -> Path:
    """Where built interpreters are kept: ``$ORCH_INTERPRETER_DIR``, else under the cache.
    Tests point it outside their throw-away cache dirs, as with the cross toolchain roots."""
    override = options.env().interpreter_dir
    return override if override is not None else paths.cache_dir() / "images" / "pythons"


def artifact_path(interp: InterpreterPlan, key: str) -> Path:
    plat = f"{interp.builder.defn.policy}_{interp.arch.name}"
    return store_dir() / plat / f"{interp.tag}-{key[:16]}.tar.gz"


def built_interpreters(plat: str) -> list[dict[str, Any]]:
    """What the store holds for one image platform (from the records beside the tarballs)."""
    records = []
    for meta in sorted((store_dir() / plat).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(meta.read_text())
            if Path(record.get("path", "")).is_file():
                records.append(record)
    return records


def ensure_interpreter(
    interp: InterpreterPlan,
    builder: engine.ImageInfo,
    phases: Phases,
    accelerator: Accelerator | None = None,
    remote: Remote | None = None,
    native: NativePython | None = None,
) -> Built:
    """The interpreter's tarball: from the store when its key is there, else compiled.

    The key needs the source's sha256 from the suite's Sources index (a container and an
    `apt-get update`), so a process asks once per interpreter: the runtime and build
    variants of an image share the answer.
    """
    with _seen_lock:
        seen = _seen.get(interp.spec_digest)
    if seen is not None and seen.path.is_file():
        return replace(seen, status="cached")
    built = _ensure(interp, builder, phases, accelerator, remote, native)
    with _seen_lock:
        _seen[interp.spec_digest] = built
    return built


def _ensure(
    interp: InterpreterPlan,
    builder: engine.ImageInfo,
    phases: Phases,
    accelerator: Accelerator | None,
    remote: Remote | None = None,
    native: NativePython | None = None,
) -> Built:
    emulated = not archs.runs_natively(interp.arch.name)
    aid = (
        accelerator(interp.arch.name, builder, phases.on_line) if accelerator and emulated else None
    )
    with _container(interp, builder, aid) as container:
        with phases.phase(f"{interp.tag}: source", "the suite's Sources index") as log:
            source = _resolve(container, interp, log)
        key = interp.artifact_key(source.sha256)
        path = artifact_path(interp, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.is_file():  # built before, or by another process while we waited
                return _cached(interp, path, source)
            if remote and remote.fetch(key, path, phases.on_line):
                _write_atomically(
                    _meta_path(path),
                    json.dumps(_record(interp, key, source, path, 0.0, False)).encode(),
                )
                return replace(_cached(interp, path, source), status="pulled")
            if aid is not None and native is not None:
                aid = _with_native_pyc(
                    container, interp, source, aid, native(source), phases.on_line
                )
            built = _compile(container, interp, source, path, key, phases, aid)
            if remote:
                remote.share(key, path, json.loads(_meta_path(path).read_text()), phases.on_line)
            return built


def _with_native_pyc(
    container: Any,
    interp: InterpreterPlan,
    source: Source,
    aid: CompileAid,
    native: Built | None,
    log: Report,
) -> CompileAid:
    """The aid plus byte-compiling on the host's interpreter of the same source (.pyc files
    do not depend on the architecture; under QEMU they were half of the compile time).

    The aid's amd64 loader and libraries run it; a different source (another version, so
    another bytecode magic) keeps the compile as it was."""
    if native is None or native.source.sha256 != source.sha256:
        why = "none built" if native is None else f"its source is {native.source.file}"
        log(f"[orch] {interp.tag}: byte-compiling under emulation (host interpreter: {why})")
        return aid
    made = engine.exec_stream(container, ["mkdir", "-p", NATIVE_DIR], lambda _chunk: None)
    if made.exit_code != 0:
        raise OrchError(f"{interp.tag}: cannot create {NATIVE_DIR} in the builder container")
    engine.put_tar(container, native.path.read_bytes(), NATIVE_DIR)  # gzip: the engine unpacks it
    script = definition.definition_dir() / definition.SCRIPTS_SUBDIR / definition.NATIVE_PYC_SCRIPT
    engine.put_tree(container, script, str(Path(NATIVE_PYC).parent), arcname=script.name)
    env = {
        **aid.env,
        # make takes variable assignments from MAKEFLAGS as if given on its command line.
        "MAKEFLAGS": f"-- PYTHON_FOR_BUILD={NATIVE_PYC}",
        "ORCH_NATIVE_PYTHON": f"{NATIVE_DIR}/{native.tag}/bin/python3",
    }
    how = f"{aid.description}; .pyc compiled by the {native.arch} interpreter"
    return CompileAid(aid.mounts, env, how)


def stored(interp: InterpreterPlan, source: Source) -> Built | None:
    """The store's tarball of `interp` compiled from `source`, found without a container
    when the source's sha256 is known already (an emulated compile's, whose .pyc files the
    host's interpreter of the same source writes); else None."""
    path = artifact_path(interp, interp.artifact_key(source.sha256))
    return _cached(interp, path, source) if path.is_file() else None


def _cached(interp: InterpreterPlan, path: Path, source: Source) -> Built:
    seconds = 0.0
    with contextlib.suppress(OSError, ValueError, KeyError):
        seconds = float(json.loads(_meta_path(path).read_text())["seconds"])
    return Built(interp.tag, interp.arch.name, path, source, "cached", seconds)


@contextlib.contextmanager
def _container(
    interp: InterpreterPlan, builder: engine.ImageInfo, aid: CompileAid | None
) -> Iterator[Any]:
    container = engine.create_container(
        builder.ref,
        # Not "managed=1": `orch clean` from another process must not kill a compile this
        # one waits for; the container is removed below however the build ends.
        labels={engine.LABEL: "image-step", LABEL_STEP: f"cpython-{interp.tag}-{interp.arch.name}"},
        mounts=aid.mounts if aid else (),
        platform=interp.arch.platform,
        network_mode="host",
        cpu_shares=BACKGROUND_CPU_SHARES,
    )
    try:
        script = definition.definition_dir() / definition.SCRIPTS_SUBDIR / definition.CPYTHON_SCRIPT
        engine.put_tree(container, script, str(Path(SCRIPT).parent), arcname=script.name)
        with stoppers.stoppable(lambda: engine.remove_container(container)):
            yield container
    finally:
        engine.remove_container(container)


def _resolve(container: Any, interp: InterpreterPlan, log: Report) -> Source:
    out = _exec(container, interp, "resolve", {}, log)
    for line in out:
        fields = line.split()
        if len(fields) == 4 and fields[0] == "orch-source":
            return Source(file=fields[1], sha256=fields[2].lower(), version=fields[3])
    raise OrchError(
        f"{interp.tag}: no {interp.source.package} source tarball in Debian "
        f"{interp.source.suite}'s Sources index (see the image log)"
    )


def _compile(
    container: Any,
    interp: InterpreterPlan,
    source: Source,
    path: Path,
    key: str,
    phases: Phases,
    aid: CompileAid | None,
) -> Built:
    how = f", {aid.description}" if aid else ""
    env = {
        "VERSION": source.version,
        "SOURCE_FILE": source.file,
        "SOURCE_SHA256": source.sha256,
        **(aid.env if aid else {}),
    }
    start = time.monotonic()
    with phases.phase(f"{interp.tag}: compile ({interp.arch.name}{how})", "make") as log:
        _exec(container, interp, "build", env, log)
        data = _output_tarball(container)
    seconds = time.monotonic() - start
    record = _record(interp, key, source, path, seconds, bool(aid))
    _write_atomically(path, data)
    _write_atomically(_meta_path(path), json.dumps(record, indent=2).encode())
    return Built(interp.tag, interp.arch.name, path, source, "built", seconds)


def _record(
    interp: InterpreterPlan, key: str, source: Source, path: Path, seconds: float, aided: bool
) -> dict[str, Any]:
    return {
        "tag": interp.tag,
        "arch": interp.arch.name,
        "key": key,
        "source": asdict(source),
        "package": interp.source.package,
        "suite": interp.source.suite,
        "seconds": round(seconds, 1),
        "accelerated": aided,
        "path": str(path),
    }


def _exec(
    container: Any, interp: InterpreterPlan, mode: str, env: Mapping[str, str], log: Report
) -> list[str]:
    """Runs build-cpython.sh MODE; returns its output lines (also sent to `log`)."""
    setarch = interp.builder.buildargs.get("SETARCH", "")
    cmd: Sequence[str] = [*([setarch] if setarch else []), SCRIPT, mode]
    full_env = {
        "TAG": interp.tag,
        "SUITE": interp.source.suite,
        "PACKAGE": interp.source.package,
        "FREE_THREADED": "1" if interp.source.free_threaded else "0",
        **env,
    }
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        log(line)

    splitter = _LineSplitter(keep)
    result = engine.exec_stream(container, cmd, splitter.feed, env=full_env)
    splitter.flush()
    if result.exit_code != 0:
        unserved = _unserved_source(interp, lines)
        if unserved:
            raise OrchError(unserved)
        tail = "\n  ".join(lines[-15:])
        raise OrchError(
            f"{interp.tag} ({interp.arch.name}): build-cpython.sh {mode} failed "
            f"(exit {result.exit_code}):\n  {tail}"
        )
    return lines


def _unserved_source(interp: InterpreterPlan, lines: list[str]) -> str:
    """The message when the suite's index lists the source but the mirror lacks its files
    (a mirror that carries the indexes and only part of the pool)."""
    missing = [line for line in lines if "404" in line and ".orig.tar." in line]
    if not missing:
        return ""
    name = missing[0].split("/")[-1].split()[0]
    return (
        f"{interp.tag} ({interp.arch.name}): Debian {interp.source.suite}'s Sources index "
        f"lists {interp.source.package}, but the package mirror does not serve {name} "
        "(404): this interpreter cannot be compiled from this mirror. Leave it out of the "
        "recipe's `python` list, or use a mirror that carries the suite's source pool."
    )


def _output_tarball(container: Any) -> bytes:
    outer = engine.get_tar(container, OUTPUT)
    with tarfile.open(fileobj=io.BytesIO(outer)) as tar:
        member = tar.extractfile(Path(OUTPUT).name)
        if member is None:
            raise OrchError(f"{OUTPUT} missing from the builder container")
        return member.read()


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".tar.gz") + ".json")


def _write_atomically(path: Path, data: bytes) -> None:
    """Written under a temporary name, then renamed: the store never holds half a file."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the store is shared like the cache
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _LineSplitter:
    """Bytes from a stream -> whole decoded lines."""

    def __init__(self, on_line: Callable[[str], object]) -> None:
        self._on_line = on_line
        self._buf = b""

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._on_line(line.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        if self._buf:
            self._on_line(self._buf.decode(errors="replace"))
            self._buf = b""
