"""The cause line: the one line of a failing stage's output a report leads with."""

from __future__ import annotations

from orchestrator.report.cause import cause_or_error, first_error_line

PIP_FAILURE = [
    "==> [   1.0s] build",
    "error: this line belongs to an earlier stage",
    "==> [  20.0s] verify",
    "$ python -m pip install /orch/verify/pkg-1.0-cp39-cp39-manylinux_2_31_x86_64.whl pyyaml",
    "Processing /orch/verify/pkg-1.0-cp39-cp39-manylinux_2_31_x86_64.whl",
    "  Copyright (c) licence noise that goes on for a while",
    "ERROR: Package 'pyyaml' requires a different Python: 3.9.2 not in '>=3.10'",
    "ERROR: a later error is not the cause",
]


def test_first_error_line_of_the_last_stage() -> None:
    assert first_error_line(PIP_FAILURE) == (
        "ERROR: Package 'pyyaml' requires a different Python: 3.9.2 not in '>=3.10'"
    )


def test_compiler_errors_and_fatal_lines() -> None:
    assert first_error_line(["a.c:3:10: fatal error: zlib.h: No such file or directory"]) == (
        "a.c:3:10: fatal error: zlib.h: No such file or directory"
    )
    assert first_error_line(["ok", "gcc: error: unrecognized option"]) == (
        "gcc: error: unrecognized option"
    )


def test_a_traceback_gives_its_exception_line() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "<string>", line 1, in <module>',
        "    import pkg",
        "ModuleNotFoundError: No module named 'pkg._native'",
    ]
    assert first_error_line(lines) == "ModuleNotFoundError: No module named 'pkg._native'"


def test_commands_colours_and_pip_resolver_notes_are_not_causes() -> None:
    lines = [
        "$ gcc -Werror=format -c x.c  # error: in a command line is not output",
        "ERROR: pip's dependency resolver does not currently take into account all the packages",
        "\x1b[31merror:\x1b[0m the real one",
    ]
    assert first_error_line(lines) == "error: the real one"
    assert first_error_line(["all good", "done"]) is None


def test_falls_back_to_the_exception() -> None:
    assert cause_or_error(["nothing here"], "repair failed with exit code 1\nmore") == (
        "repair failed with exit code 1"
    )
    assert cause_or_error([], None) is None


def test_every_renderer_leads_with_the_cause() -> None:
    from orchestrator.report import github_annotations, to_html, to_junit, to_markdown
    from tests.test_reports import realistic_report

    report = realistic_report()
    job = next(j for j in report["jobs"] if j["status"] == "failed")
    pip = PIP_FAILURE[6]
    job.update(failed_stage="verify", error="verify: install failed with exit code 1")
    job.update(log_tail=PIP_FAILURE, audit={"wheel": "/out/.orch/staging/run/x/pkg.whl"})
    # A report of an older orch has no cause: it is found in the log tail.
    for cause in (None, pip):
        job["cause"] = cause
        md = to_markdown(report)
        row = next(r for r in md.splitlines() if r.startswith(f"| `{job['id']}`"))
        assert pip.replace("|", "\\|") in row
        assert f"**cause:** `{pip}`" in md
        (annotation,) = [a for a in github_annotations(report) if a.startswith("::error")]
        assert annotation.split("::", 2)[2].startswith(pip)
        assert f'message="verify: {pip}' in to_junit(report).replace("&gt;", ">").replace(
            "&apos;", "'"
        ).replace("&#x27;", "'")
        page = to_html(report)
        box = page[page.index('id="failures"') :]
        assert (
            "Package &#x27;pyyaml&#x27; requires a different Python" in box.split("</section>")[0]
        )
        assert "/out/.orch/staging" not in page  # a path gone after the run
        assert '<span class="muted">pkg.whl</span></h4>' in page  # the wheel's name instead
