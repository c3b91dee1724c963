"""The action's build step: everything the build prints is between `::stop-commands::`
and the resume token, so workflow commands in build output are inert on the runner; the
token is random per run."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_workflows import _Runner

HOSTILE_BUILD = """#!/bin/sh
echo '::add-mask::not-a-secret'
echo '::set-env name=LD_PRELOAD::/tmp/evil.so'
echo '::stop-commands::guess'
exit 1
"""


def _build_step(tmp_path: Path) -> tuple[list[str], str]:
    tmp_path.mkdir()
    runner = _Runner(tmp_path, {})
    (tmp_path / "bin" / "orch").write_text(HOSTILE_BUILD)
    runner.outputs["plan"] = {"wheelhouse": str(tmp_path / "wh"), "cache": str(tmp_path / "c")}
    done = runner.run("build")
    return done.stdout.splitlines(), runner.outputs["build"]["status"]


def test_build_output_is_wrapped_in_stop_commands(tmp_path: Path) -> None:
    lines, status = _build_step(tmp_path / "a")
    assert status == "1"
    start = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
    token = lines[start].removeprefix("::stop-commands::")
    assert re.fullmatch(r"orch-[0-9a-f]{32}", token)
    end = lines.index(f"::{token}::")
    inside = lines[start + 1 : end]
    assert (
        "::add-mask::not-a-secret" in inside and "::set-env name=LD_PRELOAD::/tmp/evil.so" in inside
    )
    assert all(token not in line for line in inside)  # the build cannot resume commands
    assert lines[-2:] == ["::endgroup::", "orch build exited with 1"]
    other, _ = _build_step(tmp_path / "b")
    assert f"::stop-commands::{token}" not in other  # a new token per run
