"""Local images from nothing: each step's time, and what the images contain.

Runs `orch images build-local` against a private, empty Docker engine (own socket, data
root and bridge; the shared engine is never touched) with an empty ORCH_CACHE_DIR, from
the orch tree given by --tree (default: this one), so two trees (main and a branch) are
measured the same way. Prints each image step's time (debootstrap, base runtime, base
build, ...) and writes the contents of the built images to --json: every Debian package
with its version, and `pip freeze` of each interpreter and of /opt/orch-tools.

    sudo .venv/bin/python benchmarks/image_steps.py --arch aarch64 --json after.json
    python benchmarks/image_steps.py --compare before.json after.json

--compare exits 1 when two runs' images differ in a package or version: a faster build
must make the same images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.privatedockerd import PrivateDockerd, session  # noqa: E402

# build-local's plain output: "x86_64 runtime (bullseye)" heads each image, then its phases.
HEAD = re.compile(r"^(\S+) (runtime|build) \((\w+)\)$")
DONE = re.compile(r"^\[\s*[\d.]+s\] (.+?): done in ([\d.]+) s")
# Interpreters in the images and the tools venv: what pip installed in each.
FREEZE = (
    "for py in /opt/python/*/bin/python /opt/orch-tools/bin/python; do "
    '[ -x "$py" ] && echo "## $py" && "$py" -m pip freeze --all; done; '
    "echo '## dpkg'; dpkg-query -W -f '${Package}:${Architecture} ${Version}\\n'; "
    "echo '## dpkg.cfg.d'; ls /etc/dpkg/dpkg.cfg.d"  # nothing an image step left behind
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--python", default="3.9", help="build-local --python (3.9: the base only)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the orch source tree to run")
    ap.add_argument("--json", type=Path, help="step times and image contents go here")
    ap.add_argument("--engine", default="orch-imgsteps", help="socket/data stem")
    ap.add_argument("--bridge", default="orchimg0")
    ap.add_argument("--subnet", default="172.29.87.0/24")
    ap.add_argument("--compare", nargs=2, type=Path, metavar="JSON", help="diff two runs")
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    if os.geteuid() != 0:
        print("needs root (a private dockerd and its bridge)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="orch-image-steps-", dir="/var/tmp"))
    dockerd = PrivateDockerd.named(
        args.engine, args.bridge, args.subnet, work / "docker", work / "dockerd.log"
    )
    try:
        with session(dockerd, label=""):
            result = measure(args, work, dockerd)
        # Before the clean-up: deleting an engine's data root takes minutes.
        for step, seconds in result["steps"].items():
            print(f"  {step:<50} {seconds:7.1f} s", flush=True)
        print(f"  {'all (wall)':<50} {result['wall']:7.1f} s   load before: {result['load']}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        dockerd.remove_exec_root()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["exit"] == 0 else 1


def measure(args: argparse.Namespace, work: Path, dockerd: PrivateDockerd) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env |= {"DOCKER_HOST": dockerd.host, "ORCH_CACHE_DIR": str(work / "cache"), "CI": "true"}
    env["COLUMNS"] = "250"  # one phase a line: the console wraps at 80 otherwise
    cmd = [sys.executable, "-m", "orchestrator", "images", "build-local", "--arch", args.arch]
    cmd += ["--python", args.python]
    load = Path("/proc/loadavg").read_text().split()[:3]
    start = time.monotonic()
    out = subprocess.run(cmd, cwd=args.tree, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    log = out.stdout + out.stderr  # the console writes phases to either, by version
    if args.json:
        args.json.with_suffix(".log").write_text(log)
    if out.returncode != 0:
        print(log[-4000:], file=sys.stderr)
    steps = _steps(log)
    contents = {
        ref: dockerd.docker("run", "--rm", "--entrypoint", "sh", ref, "-c", FREEZE, timeout=600)
        for ref in dockerd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        if ref.startswith("orch-local/")
    }
    return {
        "tree": str(args.tree),
        "arch": args.arch,
        "exit": out.returncode,
        "load": " ".join(load),
        "wall": wall,
        "steps": steps,
        "contents": {_variant(ref): text.splitlines() for ref, text in contents.items()},
    }


def _steps(output: str) -> dict[str, float]:
    steps, image = {}, ""
    for line in output.splitlines():
        if head := HEAD.match(line.strip()):
            image = f"{head[1]} {head[2]}"
        elif done := DONE.match(line.strip()):
            steps[f"{image}: {done[1]}"] = float(done[2])
    return steps


def _variant(ref: str) -> str:
    """The image's name without its tag: the tag is the definition hash, which differs."""
    return ref.rsplit(":", 1)[0]


def compare(a: Path, b: Path) -> int:
    left, right = (json.loads(p.read_text())["contents"] for p in (a, b))
    differ = 0
    for name in sorted(set(left) | set(right)):
        old, new = set(left.get(name, ())), set(right.get(name, ()))
        for line in sorted(old - new):
            print(f"{name}: only in {a.name}: {line}")
        for line in sorted(new - old):
            print(f"{name}: only in {b.name}: {line}")
        differ += len(old ^ new)
        print(f"{name}: {len(old & new)} lines equal, {len(old ^ new)} different")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
