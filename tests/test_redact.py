"""One redaction function for every URL and error text orch writes, and output hygiene for
consoles and GitHub: credentials never reach a log, report.json, HTML, Markdown, JUnit or
an annotation; workflow commands and terminal escapes in build output are inert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.pipeline.summary import print_failures
from orchestrator.report import github_annotations, to_html, to_markdown
from orchestrator.report.joblog import JobLog
from orchestrator.report.record import DepResult, JobResult, RunReport
from orchestrator.util.redact import inert, redact

SECRETS = ["hunter2", "ghp_SECRETTOKEN123", "s3cr3tsig", "AKIAEXAMPLE", "tok-abc-123456"]
LEAKY = (
    "push to https://ci:hunter2@registry.test:5000/v2/x failed; "
    "fetch https://ghp_SECRETTOKEN123@git.test/repo.git; "
    "blob at https://s3.test/b?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=s3cr3tsig&part=1 "
    "and https://cdn.test/f?sig=s3cr3tsig&token=tok-abc-123456; "
    "header Authorization: Bearer tok-abc-123456"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pass@host/p", "https://***@host/p"),
        ("https://user:p@ss@host/p?q=a@b", "https://***@host/p?q=a@b"),
        ("http://TOKEN@host:5000", "http://***@host:5000"),
        ("https://h/x?access_token=a1&keep=2", "https://h/x?access_token=***&keep=2"),
        ("https://h/x?a=1&signature=zz#frag", "https://h/x?a=1&signature=***#frag"),
        ("https://h/x?X-Amz-Security-Token=q", "https://h/x?X-Amz-Security-Token=***"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
        ("got Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "got Bearer ***"),
        (
            "a basic understanding of bearer instruments",
            "a basic understanding of bearer instruments",
        ),
        ("mail me at someone@example.org", "mail me at someone@example.org"),
        ("https://host/p?page=2", "https://host/p?page=2"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_inert_strips_escapes_and_defuses_workflow_commands() -> None:
    out = inert(
        "fine\n::add-mask::x\n  ::stop-commands::t\n##[set-output name=a]b\n"
        "\x1b[31mred\x1b[0m \x1b]0;title\x07 bell\x07 a::b\x9b"
    )
    lines = out.splitlines()
    assert lines[0] == "fine"
    assert not any(line.lstrip().startswith(("::", "##[")) for line in lines)
    assert "add-mask" in lines[1] and "stop-commands" in lines[2]  # still readable
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert lines[-1] == "red  bell a::b"


def test_job_log_redacts_lines_split_across_chunks(tmp_path: Path) -> None:
    log = JobLog(tmp_path / "job.log")
    log.write_bytes(b"cloning https://ci:hun")
    log.write_bytes(b"ter2@registry.test/x\nnext line ?token=tok-abc-1")
    log.write("23456")
    assert all("hunter2" not in line for line in log.tail())
    log.close()
    text = (tmp_path / "job.log").read_text()
    assert "https://***@registry.test/x" in text and "token=***" in text
    assert "hunter2" not in text and "tok-abc-123456" not in text


def _leaky_report() -> RunReport:
    report = RunReport(recipe="orch.yaml", name="demo", run_id="r1")
    job = JobResult(
        "cp311-manylinux_2_31_x86_64",
        "3.11",
        "manylinux_2_31_x86_64",
        "x86_64",
        "manylinux_2_31",
        "img",
        False,
        status="failed",
        failed_stage="build",
        error=LEAKY,
        log="/tmp/x.log",
        log_tail=[LEAKY, "::add-mask::oops", "\x1b[2J::set-env name=A::b"],
    )
    report.jobs.append(job)
    report.deps.append(DepResult("zlib", "1.3", "g", "x86_64", "k" * 64, "failed", error=LEAKY))
    return report


def test_report_json_and_renderings_carry_no_secret(tmp_path: Path) -> None:
    report = _leaky_report()
    report.write(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    rendered = {
        "report.json": (tmp_path / "report.json").read_text(),
        "markdown": to_markdown(data),
        "html": to_html(data),
        "annotations": "\n".join(github_annotations(data)),
    }
    for where, text in rendered.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {where}"
    # annotations are single lines: nothing in the tail starts a workflow command
    assert "\x1b" not in rendered["annotations"] and "set-env" in rendered["annotations"]
    for line in rendered["annotations"].splitlines():
        assert line.startswith(("::error ", "::warning ")), line


def test_console_failure_output_is_inert_and_redacted() -> None:
    console = Console(record=True, width=200, color_system=None)
    print_failures(_leaky_report(), console)
    text = console.export_text()
    for secret in SECRETS:
        assert secret not in text
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())
    assert "\x1b" not in text


def test_progress_lines_are_inert_and_redacted() -> None:
    from orchestrator.report.progress import ProgressView

    console = Console(record=True, width=300, color_system=None)
    view = ProgressView(console, live=False)
    view.add("dep:x", "dep", "zlib 1.3 (x86_64)")
    view.finish("dep:x", "failed", "fetch https://ci:hunter2@mirror.test/z.tgz failed")
    view.print("dependency zlib failed:\n::add-mask::x\n\x1b]0;pwned\x07tail")
    text = console.export_text()
    assert "hunter2" not in text and "https://***@mirror.test" in text
    assert not any(line.startswith("::") for line in text.splitlines())
    assert "\x1b" not in text and "\x07" not in text


def test_cli_errors_are_redacted_and_not_markup(tmp_path: Path) -> None:
    from tests.support.run import orch

    done = orch(
        "cache",
        "pull",
        "https://ci:hunter2@[bad",
        "--repository",
        "orch/deps/x",
        "--key",
        "0" * 64,
        env={"ORCH_CACHE_DIR": str(tmp_path)},
    )
    assert done.returncode != 0
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
    assert "error: " in done.stderr


def test_a_closed_log_ends_its_last_line_so_an_appended_log_starts_on_its_own(
    tmp_path: Path,
) -> None:
    child = JobLog(tmp_path / "child.log")
    child.write("[verify] progress without a newline")
    assert not child.closed
    child.close()
    assert child.closed
    parent = JobLog(tmp_path / "job.log")
    parent.write(child.path.read_text())
    parent.line("==> land")
    parent.close()
    assert (tmp_path / "job.log").read_text().splitlines() == [
        "[verify] progress without a newline",
        "==> land",
    ]
