"""Image build phases and heartbeats (images/progress.py), and the interpreter store's
bookkeeping (images/interpreters.py): no Docker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from orchestrator import archs
from orchestrator.images import definition, interpreters
from orchestrator.images.progress import Phases


def _collect() -> tuple[list[str], list[str], Phases]:
    phases: list[str] = []
    lines: list[str] = []
    lock = threading.Lock()

    def on_phase(text: str) -> None:
        with lock:
            phases.append(text)

    return phases, lines, Phases(on_phase, lines.append, heartbeat=0.2)


def test_phase_reports_start_sub_phases_and_elapsed_time() -> None:
    phases, lines, tracker = _collect()
    with tracker.phase("cp313-cp313: compile", "make") as log:
        log("gcc -c Objects/abstract.c")
        log("[orch-image] phase configure --disable-gil")
        log("[orch-image] phase make -j2")
    assert phases[0] == "cp313-cp313: compile"
    assert phases[1].startswith("cp313-cp313: compile: configure --disable-gil (")
    assert phases[2].startswith("cp313-cp313: compile: make -j2 (")
    assert phases[-1].startswith("cp313-cp313: compile: done in ") and phases[-1].endswith(" s")
    assert "gcc -c Objects/abstract.c" in lines  # output goes to the log, not the view
    assert all(not p.startswith("gcc") for p in phases)
    assert any(line.startswith("[orch] cp313-cp313: compile: done in") for line in lines)


def test_silent_phase_gets_heartbeats_naming_what_it_waits_for() -> None:
    phases, _lines, tracker = _collect()
    with tracker.phase("base build (toolchain)", "apt-get in the image build") as log:
        log("Unpacking gcc-10 (10.2.1-6) ...")
        time.sleep(0.75)
    beats = [p for p in phases if "still running" in p]
    assert len(beats) >= 2, phases
    assert "waiting for apt-get in the image build" in beats[0]
    assert "last output: Unpacking gcc-10" in beats[0]


def test_heartbeat_names_the_sub_phase_under_way() -> None:
    phases, _lines, tracker = _collect()
    with tracker.phase("cp313-cp313: compile (x86_64)", "make") as log:
        log("[orch-image] phase configure")
        time.sleep(0.5)
    beats = [p for p in phases if "still running" in p]
    assert beats and "waiting for configure" in beats[-1], phases


def test_output_keeps_heartbeats_away_but_not_forever() -> None:
    """Only phase reports reset the heartbeat: a chatty step still says what it waits for."""
    phases, _lines, tracker = _collect()
    with tracker.phase("debootstrap bullseye/amd64", "debootstrap") as log:
        for _ in range(8):
            log("I: Retrieving libc6")
            time.sleep(0.1)
    assert any("still running" in p for p in phases)


def test_failed_phase_says_so_and_raises() -> None:
    phases, _lines, tracker = _collect()
    with pytest.raises(RuntimeError), tracker.phase("cp314-cp314t: compile", "make"):
        raise RuntimeError("make failed")
    assert phases[-1].startswith("cp314-cp314t: compile: failed after ")
    assert not any("done in" in p for p in phases)


def test_store_lists_built_interpreters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(interpreters.ENV_INTERPRETER_DIR, str(tmp_path / "store"))
    assert interpreters.store_dir() == tmp_path / "store"
    (interp,) = definition.plan_image("x86_64", pythons=("3.13t",)).interpreters
    path = interpreters.artifact_path(interp, interp.artifact_key("ab" * 32))
    assert path.parent == tmp_path / "store" / "manylinux_2_31_x86_64"
    assert path.name.startswith("cp313-cp313t-") and path.name.endswith(".tar.gz")
    path.parent.mkdir(parents=True)
    record = {"tag": interp.tag, "path": str(path), "seconds": 151.0}
    (path.parent / (path.name.removesuffix(".tar.gz") + ".json")).write_text(json.dumps(record))
    assert interpreters.built_interpreters("manylinux_2_31_x86_64") == []  # no tarball yet
    interpreters._write_atomically(path, b"tarball")
    assert [r["tag"] for r in interpreters.built_interpreters("manylinux_2_31_x86_64")] == [
        "cp313-cp313t"
    ]
    assert not list(path.parent.glob(".tmp-*"))  # nothing half-written left behind


def test_images_list_shows_available_and_built_pythons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from orchestrator.container import engine
    from orchestrator.images import commands
    from orchestrator.images.sources import SourceCheck
    from orchestrator.plan import catalog

    monkeypatch.setenv(interpreters.ENV_INTERPRETER_DIR, str(tmp_path))
    plan = definition.plan_image("aarch64", pythons=("3.13t",))
    (interp,) = plan.interpreters
    path = interpreters.artifact_path(interp, interp.artifact_key("ab" * 32))
    path.parent.mkdir(parents=True)
    interpreters._write_atomically(path, b"tarball")
    record = {"tag": interp.tag, "path": str(path)}
    path.with_name(path.name.removesuffix(".tar.gz") + ".json").write_text(json.dumps(record))
    image = engine.ImageInfo(
        plan.ref("build"), "sha256:0", "arm64", "", plan.labels("build"), {}, ()
    )
    monkeypatch.setattr(engine, "list_images", lambda _label: [image])
    console = Console(width=250, record=True)

    def forky_unserved(suite: str, package: str) -> SourceCheck:  # this mirror's answer
        return SourceCheck(suite, package, "unserved" if suite == "forky" else "served")

    console.print(commands.local_pythons_table(catalog.load()))
    unchecked = console.export_text()  # nobody asked the mirror: the definition's list
    assert "cp39 cp311 cp313 cp313t cp314 cp314t cp315 cp315t" in unchecked
    console.print(commands.local_pythons_table(catalog.load(), forky_unserved))
    text = console.export_text()  # clears the record
    rows = [ln for ln in text.splitlines() if "bullseye" in ln]
    aarch64 = next(ln for ln in rows if "aarch64" in ln)
    cols = [c.strip() for c in aarch64.split("│")]
    assert cols[4:6] == ["cp39 cp311 cp313 cp313t", "cp39 cp313t"]  # built: Debian's, stored
    assert f"{plan.ref('build')} (cp39 cp313t)" in aarch64
    x86 = next(ln for ln in rows if "x86_64" in ln)
    assert "│ cp39 " in x86 and "cp313t (" not in x86
    # forky: both are Debian's, so both count as built without any store entry
    forky = next(ln for ln in text.splitlines() if "forky" in ln)
    assert [c.strip() for c in forky.split("│")][4:6] == ["cp314 cp315", "cp314 cp315"]


class _FakeBuilder:
    """The engine calls of one interpreter build, in memory (orchestration only: the real
    compile is tests/test_pythons_e2e.py)."""

    def __init__(self, sha: str, build_exit: int = 0) -> None:
        self.sha, self.build_exit = sha, build_exit
        self.modes: list[str] = []
        self.created = self.removed = 0
        self.cpu_shares: list[object] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from orchestrator.container import engine

        monkeypatch.setattr(engine, "create_container", self.create)
        monkeypatch.setattr(engine, "remove_container", self.remove)
        monkeypatch.setattr(engine, "put_tree", lambda *_a, **_k: None)
        monkeypatch.setattr(engine, "exec_stream", self.exec)
        monkeypatch.setattr(engine, "get_tar", self.get_tar)

    def create(self, *_args: object, **kwargs: object) -> str:
        self.created += 1
        self.cpu_shares.append(kwargs.get("cpu_shares"))
        return "container"

    def remove(self, _container: object) -> None:
        self.removed += 1

    def exec(self, _c: object, cmd: list[str], on_output, env=None, **_k):  # type: ignore[no-untyped-def]
        from orchestrator.container import engine

        mode = cmd[-1]
        self.modes.append(mode)
        if mode == "resolve":
            on_output(
                f"noise\norch-source python3.13_3.13.5.orig.tar.xz {self.sha} 3.13.5-2\n".encode()
            )
            return engine.ExecResult(0, 0.1)
        assert env["SOURCE_SHA256"] == self.sha and env["FREE_THREADED"] == "0"
        on_output(b"[orch-image] phase configure\n[orch-image] phase make -j2\n")
        return engine.ExecResult(self.build_exit, 0.1)

    def get_tar(self, _c: object, path: str) -> bytes:
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(Path(path).name)
            info.size = len(b"interpreter")
            tar.addfile(info, io.BytesIO(b"interpreter"))
        return buf.getvalue()


def test_interpreter_compiled_once_per_source_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.container import engine

    monkeypatch.setenv(interpreters.ENV_INTERPRETER_DIR, str(tmp_path))
    monkeypatch.setattr(interpreters, "_seen", {})
    (interp,) = definition.plan_image("x86_64", pythons=("3.13",)).interpreters
    builder = engine.ImageInfo("builder", "sha256:b", "amd64", "", {}, {}, ())
    phases, _lines, tracker = _collect()

    fake = _FakeBuilder("ab" * 32)
    fake.install(monkeypatch)
    first = interpreters.ensure_interpreter(interp, builder, tracker)
    assert first.status == "built" and first.path.read_bytes() == b"interpreter"
    assert fake.modes == ["resolve", "build"] and fake.created == fake.removed == 1
    # a compile yields the CPU to the base image and the jobs that do not wait for it
    assert fake.cpu_shares == [interpreters.BACKGROUND_CPU_SHARES] and fake.cpu_shares[0] < 1024
    assert any(p.startswith("cp313-cp313: compile (x86_64): make -j2") for p in phases)
    assert interpreters.ensure_interpreter(interp, builder, tracker).status == "cached"
    assert fake.modes == ["resolve", "build"]  # this process already knows the answer

    monkeypatch.setattr(interpreters, "_seen", {})  # a new process: asks, finds it stored
    again = interpreters.ensure_interpreter(interp, builder, tracker)
    assert again.status == "cached" and again.path == first.path
    assert fake.modes == ["resolve", "build", "resolve"]

    monkeypatch.setattr(interpreters, "_seen", {})  # Debian published a new source: rebuilt,
    broken = _FakeBuilder("cd" * 32, build_exit=2)  # and a failure leaves nothing behind
    broken.install(monkeypatch)
    with pytest.raises(interpreters.OrchError, match=r"cp313-cp313 \(x86_64\).*build failed"):
        interpreters.ensure_interpreter(interp, builder, tracker)
    assert broken.created == broken.removed == 1
    left = {p.name for p in first.path.parent.iterdir() if not p.name.endswith(".lock")}
    assert left == {first.path.name, first.path.name.removesuffix(".tar.gz") + ".json"}


@pytest.mark.skipif(archs.host_arch() != "x86_64", reason="aarch64 is emulated on x86_64")
def test_the_hosts_interpreter_of_the_same_source_is_found_without_a_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emulated compile byte-compiles with the host's interpreter of its source: when
    the store has it for that sha256, no builder image, container or Sources index is
    asked for (each one ~20-35 s of apt-get beside the emulated compile)."""
    from orchestrator.container import engine
    from orchestrator.images import local

    monkeypatch.setenv(interpreters.ENV_INTERPRETER_DIR, str(tmp_path))
    monkeypatch.setattr(interpreters, "_seen", {})
    (emulated,) = definition.plan_image("aarch64", pythons=("3.13t",)).interpreters
    host_builder = definition.plan_builder(definition.load_suite("bullseye"), archs.get("x86_64"))
    host = definition.plan_interpreter(emulated.source, host_builder)
    source = interpreters.Source("python3.13_3.13.5.orig.tar.xz", "ab" * 32, "3.13.5-2")
    path = interpreters.artifact_path(host, host.artifact_key(source.sha256))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"host interpreter")
    asked: list[str] = []

    def ensure_builder(*_args: object) -> engine.ImageInfo:
        asked.append("builder")
        return engine.ImageInfo("builder", "sha256:b", "amd64", "", {}, {}, ())

    monkeypatch.setattr(local, "_ensure_builder", ensure_builder)
    monkeypatch.setattr(local, "_rootfs", lambda *_a, **_k: tmp_path / "root.tar")
    monkeypatch.setattr(
        interpreters, "ensure_interpreter", lambda i, *_a, **_k: asked.append(i.arch.name)
    )
    native = local.native_python(emulated, _collect()[2])
    assert native is not None
    found = native(source)
    assert found is not None and (found.path, found.status, found.arch) == (
        path,
        "cached",
        "x86_64",
    )
    assert asked == []
    # Another source (Debian published a new one): the host's is compiled (or fetched) first.
    native(interpreters.Source(source.file, "cd" * 32, "3.13.5-3"))
    assert asked == ["builder", "x86_64"]
