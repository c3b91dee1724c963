"""A build that prints workflow commands and terminal escapes (they must stay inert on the
console and in annotations), and two jobs that make one wheel file name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import Record, assert_clean
from tests.faults.engine import FaultEngine
from tests.faults.scenario import make_build
from tests.support.run import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOSTILE_SETUP = r"""
import sys
from setuptools import setup
for line in ["::add-mask::orch-secret-value", "::stop-commands::orchpwned",
             "::error file=setup.py::injected annotation", "::set-output name=x::y",
             "\x1b]0;pwned title\x07", "\x1b[2J\x1b[31mred\x1b[0m", "\x1b]8;;http://127.0.0.1/\x07link"]:
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)
sys.exit("build failed on purpose")
setup(name="hostile", version="1.0")
"""
PURE_SETUP = (
    'from setuptools import setup\nsetup(name="purepkg", version="1.0", py_modules=["purepkg"])\n'
)
COMMAND = re.compile(r"^\s*::[a-z-]+")


def _inert(text: str) -> list[str]:
    """Lines a runner or a terminal would act on."""
    bad = [line for line in text.splitlines() if COMMAND.match(line)]
    return bad + [
        f"control character {c!r}" for c in sorted(set(re.findall(r"[\x1b\x07\x9b]", text)))
    ]


def test_workflow_commands_in_build_output(
    engine: FaultEngine, tmp_path: Path, record: Record
) -> None:
    proj = tmp_path / "hostile-src"
    proj.mkdir()
    (proj / "setup.py").write_text(HOSTILE_SETUP)
    build = make_build(tmp_path / "run", engine, project=proj)
    build.env["GITHUB_ACTIONS"] = "true"
    outcome = build.run("--no-audit")
    annotations = subprocess.run(
        [sys.executable, "-m", "orchestrator", "report", str(build.out), "--github-annotations"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **engine.env},
    )  # fmt: skip
    record("workflow commands in build output", outcome)
    assert_clean(outcome)
    assert outcome.exit_code == 1, outcome.summary()
    assert "orchpwned" in outcome.output or "add-mask" in outcome.output  # the tail was shown
    live = _inert(outcome.output)
    assert live == [], f"{live}\n{outcome.output[-3000:]}"
    notes = [x for x in annotations.stdout.splitlines() if x.startswith("::")]
    assert notes, annotations.stdout + annotations.stderr
    assert all(x.startswith(("::error ", "::warning ", "::notice ")) for x in notes), notes
    assert _inert("\n".join(x for x in annotations.stdout.splitlines() if x not in notes)) == []
    assert not re.search(r"[\x1b\x07]", annotations.stdout)


def test_two_jobs_one_wheel_name(engine: FaultEngine, tmp_path: Path, record: Record) -> None:
    proj = tmp_path / "pure-src"
    proj.mkdir()
    (proj / "setup.py").write_text(PURE_SETUP)
    (proj / "purepkg.py").write_text("VALUE = 42\n")
    build = make_build(
        tmp_path / "run", engine, project=proj, python='["3.9", "3.11"]',
        lines=["repair: {enabled: false}", "test: {imports: [purepkg]}"],
    )  # fmt: skip
    # --no-verify: verification of a py3-none-any wheel is refused on its own (reported).
    outcome = build.run("--no-audit", "--no-verify")
    record("two jobs, one wheel name", outcome)
    assert_clean(outcome)
    assert outcome.report is not None
    wheels = [j["wheel"] for j in outcome.report["jobs"] if j["status"] == "ok" and j["wheel"]]
    names = {w["filename"] for w in wheels}
    assert names == {"purepkg-1.0-py3-none-any.whl"}, outcome.report["jobs"]
    assert len({w["sha256"] for w in wheels}) == 1, wheels  # one file, one sha256
    failed = [j for j in outcome.report["jobs"] if j["status"] != "ok"]
    assert all("purepkg-1.0-py3-none-any.whl" in (j.get("error") or "") for j in failed), failed
