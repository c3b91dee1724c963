"""Warm runs of two orch trees side by side, alternating: the same project copies, caches
and images, each tree's own code (`python -m orchestrator` with the tree as working
directory). Prints each run's wall time, mean per-stage times per job and the load.

    python benchmarks/warm_side_by_side.py --tree A=/path --tree B=/path \\
        --project x86_64=DIR/orch.yaml:CACHE --project aarch64=DIR/orch.yaml:CACHE \\
        [--rounds 3] [--settle] [--args B=--recheck]

`--args NAME=ARGS` adds `orch build` arguments for one tree name (the same tree may be
listed twice under two names, e.g. with and without --recheck).

The projects and caches are those `benchmarks/vs_cibuildwheel.py --work W --warm-only`
leaves (W/<project>-<arch>-1/src/orch.yaml, W/<project>-<arch>-prime-cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(
    tree: Path, recipe: Path, cache: Path, out: Path, extra: list[str] | None = None
) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "ORCH_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "orchestrator", "build", "-f", str(recipe), "-o", str(out)]
    cmd += extra or []
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "--plain"], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: orch build failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads((out / ".orch" / "report.json").read_text())
    return wall, report


def stages(report: dict[str, Any]) -> str:
    jobs = report["jobs"]
    names = dict.fromkeys(k for j in jobs for k in j.get("stages", {}))
    mean = {n: sum(j["stages"].get(n, 0.0) for j in jobs) / len(jobs) for n in names}
    verified = sorted({v["image"].split(":")[0] for j in jobs for v in j.get("verify", [])})
    checks = "/".join(sorted({j.get("checks", {}).get("status", "run") for j in jobs}))
    stage_list = ", ".join(f"{k} {v:.1f}" for k, v in mean.items())
    return f"{stage_list}; checks {checks}; verified in {verified}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", required=True, help="NAME=PATH")
    ap.add_argument("--project", action="append", required=True, help="ARCH=RECIPE:CACHE")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", action="store_true", help="one unmeasured run per tree first")
    ap.add_argument("--args", action="append", default=[], help="NAME=ARGS for one tree")
    args = ap.parse_args()
    extra = {n: a.split() for n, a in (x.split("=", 1) for x in args.args)}
    trees = [(n, Path(p)) for n, p in (t.split("=", 1) for t in args.tree)]
    projects = []
    for spec in args.project:
        arch, rest = spec.split("=", 1)
        recipe, cache = rest.rsplit(":", 1)
        projects.append((arch, Path(recipe), Path(cache)))
    out = Path(tempfile.mkdtemp(prefix="orch-side-"))
    if args.settle:
        for name, tree in trees:
            for arch, recipe, cache in projects:
                run(tree, recipe, cache, out / f"settle-{name}-{arch}", extra.get(name))
    print(f"2 CPUs; load at start {os.getloadavg()}", flush=True)
    walls: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]  # alternate who goes first
        for name, tree in order:
            for arch, recipe, cache in projects:
                wall, report = run(tree, recipe, cache, out / f"{r}-{name}-{arch}", extra.get(name))
                walls.setdefault((name, arch), []).append(wall)
                load = os.getloadavg()[0]
                print(
                    f"round {r + 1} {name:6s} {arch:8s} {wall:5.1f} s  load {load:4.1f}  "
                    f"{stages(report)}",
                    flush=True,
                )
    print()
    for name, _tree in trees:
        means = {a: sum(w) / len(w) for (n, a), w in walls.items() if n == name}
        line = ", ".join(f"{a} {m:.1f} s" for a, m in means.items())
        ratio = ""
        if "x86_64" in means:
            ratio = ", ".join(
                f"{a}/x86_64 {m / means['x86_64']:.2f}" for a, m in means.items() if a != "x86_64"
            )
        print(f"{name}: mean warm {line}; {ratio}")
    print(f"load at end {os.getloadavg()}; runs kept in {out}")


if __name__ == "__main__":
    main()
