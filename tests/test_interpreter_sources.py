"""A Sources index that lists a CPython whose files the mirror does not serve gives a
message saying exactly that (not apt's log tail)."""

from __future__ import annotations

from orchestrator import archs
from orchestrator.images import definition, interpreters


def _interp() -> definition.InterpreterPlan:
    defn = definition.load_suite("bullseye")
    builder = definition.plan_builder(defn, archs.get("x86_64"))
    # listed in forky's Sources index; a mirror may not serve its tarball (images/sources.py)
    source = definition.SourcePython("cp314-cp314", "forky", "python3.14")
    return definition.plan_interpreter(source, builder)


def test_unserved_source_is_named() -> None:
    lines = [
        "Err:2 http://mirror.invalid/debian forky/main python3.14 3.14.8-1 (tar)",
        "  404  Not Found [IP: 192.0.2.1 80]",
        "E: Failed to fetch http://mirror.invalid/debian/pool/main/p/python3.14/"
        "python3.14_3.14.8.orig.tar.xz  404  Not Found [IP: 192.0.2.1 80]",
    ]
    message = interpreters._unserved_source(_interp(), lines)
    assert "cp314-cp314 (x86_64)" in message
    assert "forky's Sources index lists python3.14" in message
    assert "does not serve python3.14_3.14.8.orig.tar.xz (404)" in message
    assert "Leave it out of the recipe's `python` list" in message


def test_other_failures_keep_the_log_tail() -> None:
    assert interpreters._unserved_source(_interp(), ["make: *** [all] Error 2"]) == ""
