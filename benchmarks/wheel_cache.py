"""Per-job build and verify stage times, before (another orch tree, e.g. main) and after
(this tree), cold (empty wheel cache) and warm, for example projects on x86_64. Runs
interleave so both trees see the same machine load; the load average is printed per run.

Dependencies are built once first (a priming run, not measured); every measured run
shares that dependency cache, and "cold" removes only the wheel cache.

    python benchmarks/wheel_cache.py --before /path/to/main-tree \\
        [--rounds 1] [--mirror DIR] [--work DIR] examples/hello-bz2 examples/multi-deps
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def orch_build(tree: Path, project: Path, out: Path, env: dict[str, str]) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "orchestrator", "build", "-f", str(project), "-o", str(out)]
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run(
        [*cmd, "--plain", "-j", "2"], cwd=tree, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: build failed\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    report = json.loads((out / ".orch" / "report.json").read_text())
    jobs = report["jobs"]
    return {
        "wall": wall,
        "load": load,
        "build": [j["stages"].get("build", 0.0) for j in jobs],
        "verify": [j["stages"].get("verify", 0.0) for j in jobs],
        "cache": [j.get("wheel_cache", {}).get("build", "-") for j in jobs],
    }


def line(label: str, r: dict[str, object]) -> str:
    build, verify = r["build"], r["verify"]
    assert isinstance(build, list) and isinstance(verify, list)
    return (
        f"  {label:14s} build/job {statistics.mean(build):5.1f} s "
        f"(max {max(build):5.1f})  verify/job {statistics.mean(verify):4.1f} s  "
        f"run {r['wall']:5.1f} s  wheel cache {','.join(map(str, r['cache']))}  "
        f"load {r['load']:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("projects", nargs="+", type=Path)
    ap.add_argument("--before", type=Path, required=True, help="the tree to compare with")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--mirror", default=os.environ.get("ORCH_SOURCE_MIRROR", ""))
    ap.add_argument("--work", type=Path, help="keep caches here (primed once, reused)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()}")
    with contextlib.ExitStack() as stack:
        tmp = args.work or stack.enter_context(tempfile.TemporaryDirectory(prefix="orch-bench-"))
        for project in args.projects:
            cache = Path(tmp) / project.name / "cache"
            env = {**os.environ, "ORCH_CACHE_DIR": str(cache), "ORCH_SOURCE_MIRROR": args.mirror}
            out = Path(tmp) / project.name / "out"
            print(f"{project.name}: priming the dependency cache ...", flush=True)
            orch_build(HERE, project.resolve(), out, env)
            for n in range(args.rounds):
                print(f"{project.name}, round {n + 1}:")
                shutil.rmtree(cache / "wheels", ignore_errors=True)
                runs = [
                    ("before, cold", args.before),
                    ("after, cold", HERE),
                    ("after, warm", HERE),
                    ("before, again", args.before),
                ]
                for label, tree in runs:
                    print(line(label, orch_build(tree, project.resolve(), out, env)), flush=True)
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
