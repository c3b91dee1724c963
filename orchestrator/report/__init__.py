"""Reports people read, made from run reports (`<output>/.orch/report.json`): merged
across shards, as JUnit XML, Markdown, a self-contained HTML page, and GitHub annotations."""

from __future__ import annotations

import importlib
from typing import Any

# eager: the submodule of the same name would otherwise shadow the function
from orchestrator.report.merge import merge

# Loaded on first use: `orch build` imports report.record/progress/joblog, which runs this
# file; the renderers (JUnit's XML library, the HTML page) are `orch report`'s alone.
_WHERE = {
    "expect_plan": "checks",
    "expect_wheels": "checks",
    "github_annotations": "checks",
    "to_html": "html",
    "to_junit": "junit",
    "to_markdown": "markdown",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "expect_plan",
    "expect_wheels",
    "github_annotations",
    "merge",
    "to_html",
    "to_junit",
    "to_markdown",
]
