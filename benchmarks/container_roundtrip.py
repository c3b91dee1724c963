"""Per-job overhead of the container round trip orch makes for every wheel: create+start,
copy the project in, a no-op exec, copy a wheel-sized file out, remove. Prints the median
and min of each step over N rounds (default 10), with the local x86_64 build image.

    python benchmarks/container_roundtrip.py [--rounds N] [--project examples/hello-bz2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from orchestrator.container import engine
from orchestrator.images.local import ensure_local_image
from orchestrator.pipeline.build import project_tar
from orchestrator.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--project", type=Path, default=ROOT / "examples" / "hello-bz2")
    args = ap.parse_args()
    image = ensure_local_image("x86_64", "build").ref
    tar = project_tar(load_recipe(args.project / "orch.yaml"))
    steps: dict[str, list[float]] = {
        k: [] for k in ("create", "copy in", "exec", "copy out", "remove", "total")
    }
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        c = engine.create_container(image, labels={"io.orch.bench": "1"})
        t1 = time.perf_counter()
        engine.exec_stream(c, ["mkdir", "-p", "/orch"], lambda b: None)
        engine.put_tar(c, tar, "/orch")
        t2 = time.perf_counter()
        engine.exec_stream(
            c, ["sh", "-c", "head -c 1000000 /dev/urandom > /orch/x.whl"], lambda b: None
        )
        t3 = time.perf_counter()
        engine.get_tar(c, "/orch/x.whl")
        t4 = time.perf_counter()
        engine.remove_container(c)
        t5 = time.perf_counter()
        for key, value in zip(
            steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True
        ):
            value_list = steps[key]
            value_list.append(value)
    print(
        f"container round trip, {args.rounds} rounds, image {image}, project tar {len(tar) / 1024:.0f} KiB"
    )
    for key, values in steps.items():
        print(
            f"  {key:9} median {statistics.median(values) * 1000:7.1f} ms   min {min(values) * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
