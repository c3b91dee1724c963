"""The schedule on the real engine: a job whose interpreter is ready builds and lands its
wheel in real containers while another interpreter of the same image is still 'being
compiled' (held by the test: a real compile takes minutes; the point is that the job
does not wait for it). The images are the real local ones."""

from __future__ import annotations

import io
import os
import shutil
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator.container import engine
from orchestrator.container.types import ImageInfo
from orchestrator.options import BuildOptions
from orchestrator.pipeline.images import BuiltLocalImages, Report
from orchestrator.pipeline.run import run
from orchestrator.plan.jobs import Job, Plan, make_plan
from orchestrator.recipe import load_recipe
from tests.conftest import EXAMPLES
from tests.test_runner import eventually

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("ORCH_TEST_SCHED") != "1",
        reason="set ORCH_TEST_SCHED=1 (two real wheel builds, ~1-2 min)",
    ),
]


class HeldCp311(BuiltLocalImages):
    """The base and cp39 (Debian's, in the base) as they are; cp311's image 'compiles'
    until released, then is the real image with cp311, under a tag of this test."""

    def __init__(self, with_cp311: str) -> None:
        super().__init__("plain")
        self.with_cp311 = with_cp311
        self.tag = f"orch-test-sched/cp311:{uuid.uuid4().hex[:12]}"
        self.gate = threading.Event()

    def python_ref(self, job: Job, variant: str) -> str:
        return self.tag if job.python == "3.11" else super().python_ref(job, variant)

    def for_python(self, job: Job, variant: str, on_line: Report, on_phase: Report) -> ImageInfo:
        on_phase(f"{job.python_tag}: compile (held by the test)")
        assert self.gate.wait(600)
        engine.tag_image(self.with_cp311, self.tag)
        info = engine.inspect_image(self.tag)
        assert info is not None
        return info


def test_a_job_lands_while_another_interpreter_compiles(
    x86_images: tuple[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    project = tmp_path / "hello-bz2"
    shutil.copytree(EXAMPLES / "hello-bz2", project)
    recipe = load_recipe(project / "orch.yaml")
    plan = make_plan(recipe)
    # As on a machine without the combined image: the run builds it in steps.
    absent = f"orch-test-sched/absent:{uuid.uuid4().hex[:12]}"
    plan = Plan(plan.recipe, tuple(replace(j, image=absent) for j in plan.jobs))
    local = HeldCp311(x86_images[0])
    opts = BuildOptions(output_dir=tmp_path / "out", jobs=2, verify=False, audit=False, live=False)
    out = io.StringIO()
    result: dict[str, Any] = {}

    def go() -> None:
        result["report"] = run(recipe, plan, opts, Console(file=out, width=200), local_images=local)

    thread = threading.Thread(target=go)
    thread.start()
    try:
        landed = eventually(lambda: any(opts.output_dir.glob("*-cp39-*.whl")), timeout=600)
        assert landed, out.getvalue()
        assert not any(opts.output_dir.glob("*-cp311-*.whl"))
        assert (
            "waiting: interpreter cp311 (cp311-cp311: compile (held by the test))" in out.getvalue()
        )
    finally:
        local.gate.set()
        thread.join(600)
        engine.remove_image(local.tag)
    report = result["report"]
    assert {j.id: j.status for j in report.jobs} == {
        "cp39-manylinux_2_31_x86_64": "ok",
        "cp311-manylinux_2_31_x86_64": "ok",
    }, out.getvalue()
    cp39 = next(j for j in report.jobs if j.python == "3.9")
    assert cp39.image == local.base_ref(plan.jobs[0])  # the base: Debian's Python is in it
