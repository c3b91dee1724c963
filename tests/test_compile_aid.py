"""The interpreter compile aid (orchestrator/emulation/compile_aid.py): what `orch images
build-local` compiles emulated CPythons with, and why it says when it has none."""

from __future__ import annotations

import pytest

from orchestrator.container.types import ImageInfo
from orchestrator.emulation import compile_aid
from orchestrator.emulation.accel import Fallback

BUILDER = ImageInfo(
    ref="orch-local/manylinux_2_36_ppc64le-cpython-builder:0",
    id="sha256:0",
    architecture="ppc64le",
    variant="",
    labels={"io.orch.image": "local-builder", "io.orch.suite": "bookworm"},
    env={"PATH": "/usr/bin:/bin"},
    repo_digests=(),
)


def test_plain_qemu_reason_is_a_line_build_local_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []

    def plan(arch: str, image: ImageInfo, mode: str, _log: object) -> Fallback:
        seen.append((image.labels["io.orch.image"], mode))
        return Fallback("no LLVM: clang does not work in the image: <string> not found")

    monkeypatch.setattr(compile_aid, "plan_accel", plan)
    lines: list[str] = []
    assert compile_aid.interpreter_accelerator("auto")("ppc64le", BUILDER, lines.append) is None
    # planned as a local image (the builder's own label would make it a pypa-like image)
    assert seen == [("local", "auto")]
    # `orch images build-local` drops "[orch] " lines (they are its timed phases)
    assert lines == [
        "ppc64le interpreters compile under plain QEMU: plain: no LLVM: clang does not work "
        "in the image: <string> not found"
    ]
