"""Compiling one CPython interpreter for an image, per architecture and emulation mode.

    python benchmarks/interpreters.py --arch aarch64 --python 3.13 [--emulation auto|plain]
                                      [--suite bullseye] [--store DIR] [--json FILE]

Builds the root file system and the CPython builder image when missing (not timed), then
compiles the interpreter into a fresh store (a temporary directory unless --store) and
prints the time of each phase: resolving the source, and the compile (configure, make,
install, pack). On emulated architectures --emulation auto uses the native cross compiler
where it matches the image's GCC (docs/emulation.md) and says when it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.emulation.compile_aid import interpreter_accelerator
from orchestrator.images import definition, interpreters, local, rootfs
from orchestrator.images.progress import Phases

# "cp313-cp313: compile (aarch64, ...): make install (412 s)": a step and its start.
STEP = re.compile(r": (download|configure|make -j\d+|make install|pack)\b.*\((\d+) s\)$")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--python", default="3.13")
    ap.add_argument("--suite", default="bullseye")
    ap.add_argument("--emulation", default="auto")
    ap.add_argument("--store", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--no-native-pyc",
        action="store_true",
        help="byte-compile under emulation too (the interpreter's own make install)",
    )
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="orch-bench-pythons-"))
    os.environ[interpreters.ENV_INTERPRETER_DIR] = str(store)
    t0 = time.monotonic()

    steps: list[tuple[str, float]] = []  # the compile's sub-phases and when each started

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f}s] {text}", flush=True)
        step = STEP.search(text) if "compile (" in text else None
        if step:
            steps.append((step.group(1), float(step.group(2))))

    plan = definition.plan_image(args.arch, args.suite, (args.python,))
    (interp,) = plan.interpreters

    def note(line: str) -> None:  # whether and how compiling is accelerated
        if any(word in line for word in ("cross", "accelerat", "plain QEMU")):
            say(line)

    phases = Phases(say, note)
    tarball = local._rootfs(plan.base, phases, fresh=False)
    rootfs.check_binfmt(plan.arch)
    builder = local._ensure_builder(definition.plan_builder(plan.defn, plan.arch), tarball, phases)
    start = time.monotonic()
    built = interpreters.ensure_interpreter(
        interp,
        builder,
        phases,
        interpreter_accelerator(args.emulation),
        native=None if args.no_native_pyc else local.native_python(interp, phases),
    )
    total = time.monotonic() - start
    ends = [at for _, at in steps[1:]] + [built.seconds]
    phase_times = {name: round(end - at, 1) for (name, at), end in zip(steps, ends, strict=True)}
    result = {
        "arch": args.arch,
        "python": interp.tag,
        "suite": args.suite,
        "emulation": args.emulation,
        "status": built.status,
        "compile_seconds": round(built.seconds, 1),
        "phases": phase_times,
        "total_seconds": round(total, 1),
        "source": built.source.version,
        "tarball_mb": round(built.path.stat().st_size / 1e6, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
