"""Small builds to break: the hello-bz2 example (one job) with optional generated
dependencies served from 127.0.0.1, run by the real CLI against the private engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults import measure
from tests.faults.engine import FaultEngine, docker
from tests.support.run import EXAMPLES, ROOT
from tests.support.sourceserver import make_tarball

MAKEFILE = """\
lib{n}.a: {n}.o
\t{sleep}ar rcs $@ $^
{n}.o: {n}.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c {n}.c -o $@
install: lib{n}.a
\tmkdir -p $(PREFIX)/lib $(PREFIX)/include
\tcp lib{n}.a $(PREFIX)/lib/ && cp {n}.h $(PREFIX)/include/
\t{blob}
"""


@dataclass(frozen=True)
class Dep:
    name: str
    sleep: int = 0  # seconds the build sleeps: a window to interrupt it in
    blob_kib: int = 0  # extra bytes installed, to make the artifact bigger

    def tarball(self, srv: Path) -> tuple[Path, str]:
        sleep = f"sleep {self.sleep} && " if self.sleep else ""
        blob = (
            f"head -c {self.blob_kib * 1024} /dev/urandom > $(PREFIX)/lib/{self.name}.blob"
            if self.blob_kib
            else "true"
        )
        return make_tarball(
            srv,
            f"{self.name}-1.0",
            {
                "Makefile": MAKEFILE.format(n=self.name, sleep=sleep, blob=blob),
                f"{self.name}.h": f"int {self.name}_value(void);\n",
                f"{self.name}.c": f'#include "{self.name}.h"\nint {self.name}_value(void) {{ return 1; }}\n',
            },
        )


@dataclass
class Build:
    """One project directory, recipe, wheelhouse and cache; the engine it runs on."""

    root: Path
    engine: FaultEngine
    cache: Path
    out: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None

    @property
    def recipe(self) -> Path:
        return self.root / "proj" / "orch.yaml"

    def start(self, *extra: str) -> subprocess.Popen[str]:
        self.log = self.root / f"console-{time.monotonic_ns()}.txt"
        with self.log.open("w") as console:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "build", "-f", str(self.recipe),
                 "-o", str(self.out), "--plain", *extra],
                cwd=ROOT,
                stdout=console,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, **self.engine.env, "ORCH_CACHE_DIR": str(self.cache), **self.env},
                start_new_session=True,  # a process group of its own, like a CI step
            )  # fmt: skip
        return self.proc

    def run(self, *extra: str, timeout: float = 600) -> measure.RunOutcome:
        self.start(*extra)
        return self.finish(timeout=timeout)

    def signal(self, sig: int) -> None:
        """SIGINT goes to the process group (Ctrl-C in a terminal); others to orch alone
        (`timeout`, a CI runner)."""
        assert self.proc is not None
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def finish(self, timeout: float = 180, count_orphans: bool = True) -> measure.RunOutcome:
        assert self.proc is not None and self.log is not None
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            code = None
        output = self.log.read_text(errors="replace")
        report = measure.read_report(self.out)
        return measure.RunOutcome(
            orphans=len(self.engine.containers()) if count_orphans else 0,
            partial_wheels=measure.partial_wheels(self.out, report),
            poisoned=measure.poisoned_entries(self.cache),
            report=report,
            tracebacks=measure.count_tracebacks(output),
            exit_code=code,
            output=output,
        )

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 240) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                out = self.log.read_text() if self.log else ""
                pytest.fail(f"orch ended ({self.proc.returncode}) before {what}:\n{out[-3000:]}")
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                pytest.fail(f"orch never reached {what}")
            time.sleep(0.3)


def running(engine: FaultEngine, command: str, image_part: str = "") -> bool:
    """Is `command` running in one of orch's containers (optionally of an image)?"""
    del engine  # the private engine is the only one `docker()` talks to
    for cid in docker("ps", "-q", "--filter", "label=io.orch.managed", check=False).split():
        if image_part:
            image = docker("inspect", "-f", "{{.Config.Image}}", cid, check=False)
            if image_part not in image:
                continue
        if command in docker("top", cid, check=False):
            return True
    return False


def make_build(
    root: Path,
    engine: FaultEngine,
    base_url: str = "",
    srv: Path | None = None,
    deps: Sequence[Dep] = (),
    *,
    cache: Path | None = None,
    out: Path | None = None,
    project: Path | None = None,
    lines: Sequence[str] = (),
    python: str = '["3.11"]',
) -> Build:
    """A recipe for the hello-bz2 project (one job: cp311) plus generated dependencies."""
    root.mkdir(parents=True, exist_ok=True)
    proj = root / "proj"
    shutil.copytree(project or EXAMPLES / "hello-bz2", proj, dirs_exist_ok=True)
    extra = "".join(line + "\n" for line in lines)
    text = f"schema: 1\nname: faultdemo\nproject: .\npython: {python}\n{extra}"
    if deps:
        assert srv is not None
        text += "dependencies:\n"
        for dep in deps:
            path, sha = dep.tarball(srv)
            url = json.dumps(f"{base_url}/{path.name}")
            text += (
                f"  - name: {dep.name}\n    version: '1.0'\n"
                f"    source: {{url: {url}, sha256: {sha}}}\n"
                f"    build: {{system: make}}\n    exports: {{libs: [{dep.name}]}}\n"
            )
    recipe = proj / "orch.yaml"
    recipe.write_text(_keep_test(recipe, text))
    return Build(root, engine, cache or root / "cache", out or root / "wheelhouse")


def _keep_test(recipe: Path, text: str) -> str:
    """The example's own import/round-trip test, unless the scenario sets one."""
    if "test:" in text or not recipe.is_file():
        return text
    original = recipe.read_text()
    return text + original[original.index("test:") :] if "test:" in original else text
