"""The near-native cross compiler for compiling CPython interpreters of emulated images.

Images may not import emulation (it is a later stage), so `images.interpreters` takes an
`Accelerator` callable; this module makes one from `accel.plan_accel` for the CLI and the
run. Where acceleration does not apply (no matching cross GCC, e.g. bookworm's ppc64le and
s390x), the interpreter compiles under plain QEMU and the log says why.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.container import engine
from orchestrator.emulation.accel import Accel, apply, plan_accel
from orchestrator.images.interpreters import Accelerator, CompileAid
from orchestrator.images.progress import Report


def interpreter_accelerator(mode: str = "auto") -> Accelerator:
    """An Accelerator for `mode` (auto | accelerated | plain, as `--emulation`)."""

    def aid(arch: str, builder: engine.ImageInfo, log: Report) -> CompileAid | None:
        # The builder is an orch local Debian image (the suite's root and its gcc) under a
        # label of its own, so that it is never taken for a job image.
        as_local = replace(builder, labels={**builder.labels, "io.orch.image": "local"})
        plan = plan_accel(arch, as_local, mode, log)
        if not isinstance(plan, Accel):
            # Not "[orch] ": `orch images build-local` prints those only as timed phases, and
            # this reason (why the compile takes ~20x longer) must be seen.
            log(f"{arch} interpreters compile under plain QEMU: {plan.describe()}")
            return None
        env = apply(plan, {"PATH": plan.image_path})
        return CompileAid(tuple(plan.mounts), env, plan.describe())

    return aid
