"""Reports people read, made from run reports (`<output>/.orch/report.json`): merged
across shards, as JUnit XML, Markdown, a self-contained HTML page, and GitHub annotations."""

from orchestrator.report.checks import expect_plan, expect_wheels, github_annotations
from orchestrator.report.html import to_html
from orchestrator.report.junit import to_junit
from orchestrator.report.markdown import to_markdown
from orchestrator.report.merge import merge

__all__ = [
    "expect_plan",
    "expect_wheels",
    "github_annotations",
    "merge",
    "to_html",
    "to_junit",
    "to_markdown",
]
