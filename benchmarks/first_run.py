"""The first run on a fresh machine: how long until the demo's first wheel lands.

Runs `orch build` of the demo (examples/hello-bz2: cp39, Debian's interpreter, and cp311,
compiled) against a private, empty Docker engine (own socket, data root, exec root and
bridge; the shared engine is never touched) with an empty ORCH_CACHE_DIR and interpreter
store, so everything a fresh machine pays is paid: debootstrap, the base image, the
CPython builder, compiling cp311, the dependency, the jobs. Prints the timeline from the
plain progress lines (base image ready, first dependency, first wheel landed, all done)
and checks the target: first wheel <= 150 s after the command starts.

    sudo .venv/bin/python benchmarks/first_run.py [--json out.json] [--keep] [--first-wheel]
        [--tree OTHER_TREE]   # e.g. main, to compare side by side

Root is needed (dockerd, bridge, NAT). The data root is a fresh directory, removed at the
end unless --keep. ORCH_CACHE_REGISTRY is unset for the run: a fresh machine has no
registry cache either (with one, interpreters are pulled instead of compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.privatedockerd import PrivateDockerd, session  # noqa: E402

TARGET_SECONDS = 150.0
DEMO = ROOT / "examples" / "hello-bz2"
LINE = re.compile(r"^\[\s*([\d.]+)s\] (image|dep|job) (.+?): (ok|cached|failed|blocked)\b(.*)$")
# An image step's phase ending: "[ 20.4s] image ... (local): root bullseye/amd64: done in 20.4 s"
PHASE = re.compile(r"^\[\s*[\d.]+s\] image .+?: (.+?): done in ([\d.]+) s$")


@dataclass
class Timeline:
    started: str = ""
    base_image: float | None = None  # the first base image ready (orch's clock)
    first_dep: float | None = None
    first_wheel: float | None = None
    all_done: float | None = None  # wall time of the whole command
    exit_code: int | None = None
    stopped: bool = False  # --first-wheel: orch was stopped once the first wheel landed
    events: list[str] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)  # name -> [ended at, took]

    def see(self, line: str, wall: float) -> None:
        phase = PHASE.match(line.strip())
        if phase:
            self.phases.setdefault(phase.group(1), [round(wall, 1), float(phase.group(2))])
        m = LINE.match(line.strip())
        if not m:
            return
        _stamp, kind, what, status, _rest = m.groups()
        self.events.append(f"{wall:7.1f}s {kind} {what}: {status}")
        # The first build image ready is the base: a job of Debian's interpreter runs in
        # it as it is, and every other image is built on it.
        base = kind == "image" and "runtime" not in what and status == "ok"
        if base and self.base_image is None:
            self.base_image = wall
        elif kind == "dep" and status in ("ok", "cached") and self.first_dep is None:
            self.first_dep = wall
        elif kind == "job" and status == "ok" and self.first_wheel is None:
            self.first_wheel = wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the timeline here too")
    ap.add_argument("--keep", action="store_true", help="keep the engine's data root")
    ap.add_argument("--jobs", type=int, default=0, help="orch build -j (default: orch's)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the orch source tree to run")
    ap.add_argument(
        "--first-wheel",
        action="store_true",
        help="stop the run once the first wheel has landed (the rest is the compile of cp311)",
    )
    # Two sessions on one host must not share a socket or a bridge: name your own.
    ap.add_argument("--engine", default="orch-sched", help="socket/data stem (/run/<stem>.sock)")
    ap.add_argument("--bridge", default="orchsch0", help="the private engine's bridge")
    ap.add_argument("--subnet", default="172.29.99.0/24", help="that bridge's subnet")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (a private dockerd and its bridge)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="orch-first-run-", dir="/var/tmp"))
    dockerd = PrivateDockerd.named(
        args.engine, args.bridge, args.subnet, work / "docker", work / "dockerd.log"
    )
    try:
        with session(dockerd, label=""):  # an empty engine; every container removed after
            timeline = _measure(work, dockerd.host, args)
    finally:
        dockerd.remove_exec_root()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    _print(timeline)
    if args.json:
        args.json.write_text(json.dumps(asdict(timeline), indent=2))
    ok = timeline.exit_code == 0 and (timeline.first_wheel or 1e9) <= TARGET_SECONDS
    return 0 if ok else 1


def _measure(work: Path, host: str, args: argparse.Namespace) -> Timeline:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {
        "DOCKER_HOST": host,
        "ORCH_CACHE_DIR": str(work / "cache"),
        "ORCH_INTERPRETER_DIR": str(work / "pythons"),
    }
    demo = args.tree.resolve() / "examples" / DEMO.name
    cmd = [sys.executable, "-m", "orchestrator", "build", "-f", str(demo / "orch.yaml")]
    cmd += ["-o", str(work / "wheelhouse"), "--plain"]
    cmd += ["-j", str(args.jobs)] if args.jobs else []
    timeline = Timeline(started=time.strftime("%Y-%m-%d %H:%M:%S"))
    t0 = time.monotonic()
    stopped = False
    with (work / "orch.log").open("w", buffering=1) as log:  # line by line: readable live
        proc = subprocess.Popen(
            cmd, cwd=args.tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            wall = time.monotonic() - t0
            log.write(f"{wall:7.1f} {line}")
            timeline.see(line, wall)
            if args.first_wheel and timeline.first_wheel is not None and not stopped:
                proc.send_signal(signal.SIGINT)  # orch stops its containers and exits
                stopped = True
        code = proc.wait()
        timeline.exit_code = 0 if stopped else code  # stopped on purpose: not a failure
        timeline.stopped = stopped
    timeline.all_done = time.monotonic() - t0
    if timeline.exit_code != 0:
        print((work / "orch.log").read_text()[-4000:], file=sys.stderr)
    return timeline


def _print(t: Timeline) -> None:
    def fmt(v: float | None) -> str:
        return f"{v:7.1f} s" if v is not None else "      -  "

    print(f"first run of {DEMO.name} on an empty engine and cache ({t.started})")
    print(f"  base image ready     {fmt(t.base_image)}")
    print(f"  first dependency     {fmt(t.first_dep)}")
    print(f"  first wheel landed   {fmt(t.first_wheel)}   (target <= {TARGET_SECONDS:.0f} s)")
    end = "stopped after the first wheel" if t.stopped else f"exit {t.exit_code}"
    print(f"  all done             {fmt(t.all_done)}   ({end})")
    for event in t.events:
        print(f"    {event}")
    print("  image phases (ended at, took)")
    for name, (ended, took) in sorted(t.phases.items(), key=lambda kv: kv[1][0]):
        print(f"    {ended:7.1f}s  {took:6.1f} s  {name}")


if __name__ == "__main__":
    sys.exit(main())
