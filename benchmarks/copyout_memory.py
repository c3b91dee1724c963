"""Peak memory of copying a large file out of a container: the engine tar read whole into
memory (the old ``engine.get_tar``) against streamed to disk with a bound
(``engine.copy_out``). Each way runs in its own process, so peaks do not mix.

    python benchmarks/copyout_memory.py [--mb 300]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.container import engine
from orchestrator.images.local import ensure_local_image


def _one(image: str, mode: str, mb: int) -> None:
    labels = {engine.LABEL_JOB: "bench-copyout"}
    c = engine.create_container(image, labels=labels, network_mode="none")
    try:
        make = f"head -c {mb * 1_000_000} /dev/urandom > /big"
        engine.exec_stream(c, ["sh", "-c", make], lambda _b: None)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.monotonic()
        if mode == "memory":
            size = len(engine.get_tar(c, "/big"))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                dest = Path(tmp) / "out.tar"
                engine.copy_out(c, "/big", dest, 4096 << 20)
                size = dest.stat().st_size
        seconds = time.monotonic() - t0
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(f"{mode:9s} {size / 1e6:7.0f} MB  {seconds:5.1f} s  peak RSS +{grown:5.0f} MiB")
    finally:
        engine.remove_container(c)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=300)
    p.add_argument("--mode", choices=["memory", "streamed"])
    p.add_argument("--image")
    args = p.parse_args()
    if args.mode:
        _one(args.image, args.mode, args.mb)
        return
    image = ensure_local_image("x86_64", "build").ref
    for mode in ("memory", "streamed"):
        argv = [sys.executable, __file__, "--mode", mode, "--image", image, "--mb", str(args.mb)]
        subprocess.run(argv, check=True)


if __name__ == "__main__":
    main()
