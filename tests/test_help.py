"""Every command's --help: a description, the defaults it would use, and one example."""

from __future__ import annotations

import argparse

import pytest

from orchestrator.cli import HelpFormatter, build_parser
from tests.support.run import orch


def _commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    todo: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = [((), build_parser())]
    while todo:
        path, parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append((*path, name))
                    todo.append(((*path, name), sub))
    return sorted(out)


def _parser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


COMMANDS = _commands()


def test_every_command_is_covered() -> None:
    assert ("cache", "pull") in COMMANDS and ("images", "build-local") in COMMANDS
    assert len(COMMANDS) >= 18


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "orch" for p in COMMANDS])
def test_help_has_description_defaults_and_an_example(path: tuple[str, ...]) -> None:
    parser = _parser(path)
    text = parser.format_help()
    assert parser.description and len(parser.description) > 20, text
    assert "example:\n  orch" in text, text
    assert "exit codes:" in text, text
    formatter = HelpFormatter(prog="orch")
    for action in parser._actions:
        shown = action.default not in (None, False, [], "", argparse.SUPPRESS)
        if action.option_strings and shown:
            flags = "/".join(action.option_strings)
            assert "default" in (formatter._get_help_string(action) or ""), flags


def test_help_through_the_real_cli() -> None:
    done = orch("cache", "push", "--help")
    assert done.returncode == 0
    assert "push entries to an OCI registry" in done.stdout or "Upload cache entries" in done.stdout
    text = " ".join(done.stdout.split())  # argparse wraps the help text
    assert "(default: $ORCH_CACHE_REPOSITORY, else orch/deps/<name of ./orch.yaml>" in text
    assert "example:" in done.stdout
