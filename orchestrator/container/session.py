"""A container session: one fresh container, commands streamed to a log, files in and out
by tar, and guaranteed removal. Sessions come from `factory.ContainerFactory`."""

from __future__ import annotations

import contextlib
import io
import shlex
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Protocol

from orchestrator.container.types import (
    ContainerHandle,
    ContainerSpec,
    Engine,
    Mount,
    PathOverlay,
)
from orchestrator.errors import OrchError
from orchestrator.util.tarballs import tree_tar


def _stamp(path: Path) -> int | None:
    """A mount source's change time (None: absent, nothing to copy)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class StageFailed(OrchError):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class Cancelled(OrchError):
    pass


# Containers being removed in the background (`remove_later`): a job goes on to its next
# step instead of waiting ~1 s for the engine; the run joins them before its clean-up.
_removals: list[threading.Thread] = []
_removals_lock = threading.Lock()


def wait_removals(timeout: float = 60.0) -> None:
    """Join the background removals started so far (the run's clean-up, then, lists
    only containers nobody is removing)."""
    with _removals_lock:
        threads = list(_removals)
        _removals.clear()
    for thread in threads:
        thread.join(timeout)


class LogSink(Protocol):
    def line(self, text: str) -> None: ...

    def write_bytes(self, data: bytes) -> None: ...


class Session:
    """`with factory.session(...) as s: s.run(stage, cmd)` — the container is gone
    afterwards unless keeping it was asked for and the block failed."""

    def __init__(
        self,
        engine: Engine,
        spec: ContainerSpec,
        *,
        log: LogSink,
        cancel: threading.Event,
        keep_on_failure: bool = False,
        overlay: PathOverlay | None = None,
        personality: tuple[str, ...] = (),
        describe: str = "",
        copies: tuple[Mount, ...] = (),
        remove_later: bool = False,
    ) -> None:
        self.engine = engine
        self.remove_later = remove_later  # after success: removed by a background thread
        self.spec = spec
        self.log = log
        self.cancel = cancel
        self.keep_on_failure = keep_on_failure
        self.overlay = overlay  # e.g. native cross compiler wrappers first on PATH
        self.personality = personality
        self.describe = describe
        self.container: ContainerHandle | None = None
        self.kept = False
        self.copies = copies  # mounts made copies (a remote engine): see _sync_copies
        self._copied: dict[str, int | None] = {}

    def __enter__(self) -> Session:
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        self.container = self.engine.create(self.spec)
        if self.cancel.is_set():  # cancelled while it was created: a run's cleanup may be over
            self.engine.remove(self.container)
            raise Cancelled("cancelled")
        self.log.line(
            f"[orch] container {self.container.short_id} of {self.spec.image} "
            f"({self.spec.platform})" + (f", {self.describe}" if self.describe else "")
        )
        try:
            self._sync_copies()
        except BaseException:
            self.engine.remove(self.container)
            raise
        return self

    def _sync_copies(self) -> None:
        """Copy each mount's source in, again when it changed since (the wheel cache adds
        its tools during a build): what a bind mount shows, for an engine elsewhere."""
        for mount in self.copies:
            stamp = _stamp(Path(mount.source))
            if stamp is None or self._copied.get(mount.target) == stamp:
                continue
            self._copied[mount.target] = stamp
            arcname = mount.target.lstrip("/")
            self.engine.put_tar(self.handle, tree_tar(Path(mount.source), arcname), "/")

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.container is None:
            return
        if et is not None and self.keep_on_failure and not self.cancel.is_set():
            self.kept = True
            self.log.line(f"[orch] kept container {self.container.name} for debugging")
            return
        if et is None and self.remove_later:
            self._remove_in_background(self.container)
            return
        try:
            self.engine.remove(self.container)
        except OrchError as exc:
            if et is None:
                raise
            # the error in flight says what went wrong (often: the engine went away)
            self.log.line(f"[orch] could not remove container {self.container.short_id}: {exc}")

    def _remove_in_background(self, container: ContainerHandle) -> None:
        def remove() -> None:
            # a failure leaves it labelled with the run: the run's clean-up removes it
            with contextlib.suppress(OrchError):
                self.engine.remove(container)

        thread = threading.Thread(target=remove, name="remove-container", daemon=True)
        with _removals_lock:
            _removals.append(thread)
        thread.start()

    @property
    def handle(self) -> ContainerHandle:
        assert self.container is not None, "session not started"
        return self.container

    def run(
        self,
        stage: str,
        cmd: Sequence[str] | str,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> None:
        """Run a command (a list, or a bash script string); raise StageFailed on non-zero."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        self._sync_copies()
        argv = ["bash", "-euo", "pipefail", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        argv = [*self.personality, *argv]
        if self.overlay is not None and env is not None:
            env = self.overlay.apply(env)  # a command's own PATH keeps the overlay first
        self.log.line(f"$ {cmd if isinstance(cmd, str) else shlex.join(argv)}")
        started = time.monotonic()
        result = self.engine.exec(self.handle, argv, self.log.write_bytes, env=env, workdir=workdir)
        # per command, so a slow stage shows which of its commands is slow
        self.log.line(f"[time] {time.monotonic() - started:.1f} s")
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if result.exit_code != 0:
            gone = "" if self.engine.running(self.handle) else " (the container was stopped)"
            raise StageFailed(stage, f"{stage} failed with exit code {result.exit_code}{gone}")

    def output(
        self, cmd: Sequence[str], env: Mapping[str, str] | None = None, workdir: str | None = None
    ) -> list[str]:
        """A command's output lines, whatever its exit code (probes)."""
        chunks: list[bytes] = []
        self.engine.exec(self.handle, list(cmd), chunks.append, env=env, workdir=workdir)
        return b"".join(chunks).decode(errors="replace").splitlines()

    def mkdirs(self, *paths: str) -> None:
        """Directories made by the engine's copy (a tar of directory entries), not by a
        `mkdir` process: under QEMU every process is emulated. Missing parents are made
        too (0755), existing ones are left alone."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in paths:
                info = tarfile.TarInfo(path.strip("/"))
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
        self.put_tar(buf.getvalue(), "/")

    def exists(self, path: str) -> bool:
        """Whether `path` is in the container (itself, a link not followed), asked through
        the engine's copy API: no process in the container."""
        try:
            self.get(path)
        except OrchError:
            return False
        return True

    def symlink(self, path: str, target: str) -> None:
        """A symbolic link made by the engine's copy, not by an (emulated) `ln`."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(PurePosixPath(path).name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        self.put_tar(buf.getvalue(), str(PurePosixPath(path).parent))

    def put(self, source: Path, target_dir: str, arcname: str = ".") -> None:
        self.put_tar(tree_tar(source, arcname), target_dir)

    def put_tar(self, data: bytes, target_dir: str) -> None:
        self.engine.put_tar(self.handle, data, target_dir)

    def get(self, path: str) -> bytes:
        return self.engine.get_tar(self.handle, path)

    def copy_out(self, path: str, dest: Path, limit: int) -> None:
        """The engine's tar of `path` streamed to `dest` (removed if the copy fails)."""
        self.engine.copy_out(self.handle, path, dest, limit)
