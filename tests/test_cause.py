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
