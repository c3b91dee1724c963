"""`orch report`: merging shard reports, JUnit, Markdown, HTML, annotations and checks.

Reports are made with the real dataclasses of orchestrator.report.record (what `orch build`
writes), so a change of the report's shape shows here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ConfigError
from orchestrator.pipeline.run import planned_result
from orchestrator.plan.jobs import Excluded, Job, Plan
from orchestrator.report import cli as report_cli
from orchestrator.report import (
    expect_plan,
    expect_wheels,
    github_annotations,
    merge,
    to_html,
    to_junit,
    to_markdown,
)
from orchestrator.report.common import human_seconds, human_size, parse_job_id
from orchestrator.report.record import DepResult, ImageResult, JobResult, RunReport, WheelInfo

T0 = 1_760_000_000.0
LOG_TAIL = [
    "[orch] stage audit",
    "\x1b[31mERROR\x1b[0m symbol-versions: _depsdemo.so needs GLIBC_2.34 (policy allows 2.31)",
    "  memcpy@GLIBC_2.34 from libc.so.6",
    "audit failed: 1 error, 1 warning",
]


# --- report builders (shared with test_report_browser.py) --------------------------------


def make_job(python: str, arch: str, policy: str = "manylinux_2_31", emulated: bool = False) -> Job:
    tag = "cp" + python.replace(".", "")
    return Job(
        id=f"{tag}-{policy}_{arch}",
        python=python,
        python_tag=f"{tag}-{tag}",
        policy=policy,
        platform_tag=f"{policy}_{arch}",
        arch=arch,
        image=f"orch-local/{policy}_{arch}:0123456789ab",
        image_source="local",
        runtime_image=f"orch-local/{policy}_{arch}-runtime:0123456789ab",
        emulated=emulated,
        deps=("zlib", "zstd"),
    )


def job_result(job: Job, status: str = "ok", seconds: float = 42.5) -> JobResult:
    """A job's result as the runner records it: ok with wheel, audit and verification, or
    failed in the audit with findings and a log tail."""
    result = dataclasses.replace(
        planned_result(job),
        status=status,
        seconds=seconds,
        stages={"deps": 1.5, "build": seconds - 10, "repair": 3.0, "audit": 1.0},
        log=f"/out/.orch/logs/{job.id}.log",
        image_id="sha256:" + "ab" * 32,
    )
    wheel = f"depsdemo-1.0-{job.python_tag}-{job.platform_tag}.whl"
    audit: dict[str, Any] = {
        "wheel": wheel,
        "claimed_tags": [job.platform_tag],
        "ok": True,
        "findings": [
            {
                "check": "rpath",
                "severity": "info",
                "message": "no RPATH",
                "items": [],
                "file": None,
            },
        ],
    }
    if status == "ok":
        result.wheel = WheelInfo(
            wheel, 150_000 + len(job.id), hashlib.sha256(wheel.encode()).hexdigest()
        )
        result.audit = audit
        result.verify = [
            {
                "image": job.image + "-runtime",
                "status": "passed",
                "detail": "imports ok",
                "seconds": 2.5,
            }
        ]
    elif status == "failed":
        result.failed_stage = "audit"
        result.error = "verification or audit failed"
        result.log_tail = list(LOG_TAIL)
        audit["ok"] = False
        audit["findings"] = [
            {
                "check": "symbol-versions",
                "severity": "error",
                "message": "needs GLIBC_2.34 > 2.31",
                "items": ["memcpy@GLIBC_2.34"],
                "file": "depsdemo/_depsdemo.so",
            },
            {
                "check": "exported-static-libs",
                "severity": "warning",
                "message": "exports 3 zstd symbols",
                "items": ["ZSTD_compress", "ZSTD_decompress", "ZSTD_isError"],
                "file": "depsdemo/_depsdemo.so",
            },
        ]
        result.audit = audit
    elif status == "blocked":
        result.failed_stage = "deps"
        result.error = "dependency zstd failed"
    return result


def make_report(
    jobs: Sequence[Job],
    statuses: dict[str, str] | None = None,
    *,
    run_id: str = "run-full",
    shard: str | None = None,
    started: float = T0,
    excluded: Sequence[Excluded] = (),
) -> dict[str, Any]:
    """The JSON of a run over `jobs` (ok unless `statuses` says otherwise)."""
    statuses = statuses or {}
    report = RunReport(
        recipe="/work/examples/depsdemo/orch.yaml",
        name="depsdemo",
        started=started,
        finished=started + 600,
        host={"machine": "x86_64", "node": f"runner-{run_id}"},
        shard=shard,
        run_id=run_id,
    )
    report.jobs = [job_result(j, statuses.get(j.id, "ok"), 40.0 + i) for i, j in enumerate(jobs)]
    for group in sorted({(j.image, j.arch) for j in jobs}):
        report.images.append(
            ImageResult(group[0], group[1], "sha256:" + "cd" * 32, "local", "present", 0.2)
        )
        for name in ("zlib", "zstd"):
            status = "cached" if group[1] == "x86_64" else "built"
            if statuses.get(f"dep:{name}:{group[1]}"):
                status = statuses[f"dep:{name}:{group[1]}"]
            report.deps.append(
                DepResult(
                    name,
                    "1.0",
                    f"{group[0]}|{group[1]}",
                    group[1],
                    f"{name}-{group[1]}-key",
                    status,
                    12.0,
                    error="make: *** [all] Error 2" if status == "failed" else None,
                )
            )
    report.excluded = [{"id": e.id, "reason": e.reason} for e in excluded]
    return report.to_json()


def realistic_report() -> dict[str, Any]:
    """2 Pythons x 2 archs: aarch64 emulated, cp311 x86_64 failed in the audit."""
    jobs = [
        make_job(py, arch, emulated=arch == "aarch64")
        for arch in ("x86_64", "aarch64")
        for py in ("3.9", "3.11")
    ]
    excluded = [
        Excluded(
            "cp313-manylinux_2_31_aarch64", "orch-local/manylinux_2_31_aarch64 has no CPython 3.13"
        )
    ]
    return make_report(jobs, {"cp311-manylinux_2_31_x86_64": "failed"}, excluded=excluded)


def matrix_plan() -> Plan:
    """8 jobs in 4 (image, arch) groups: what `orch matrix` shards."""
    jobs = [
        make_job(py, arch, policy, emulated=arch != "x86_64")
        for policy in ("manylinux_2_17", "manylinux_2_31")
        for arch in ("x86_64", "aarch64")
        for py in ("3.9", "3.11")
    ]
    return Plan("orch.yaml", tuple(jobs), (Excluded("cp313-manylinux_2_17_aarch64", "no 3.13"),))


def _job_view(report: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {
        j["id"]: (j["status"], j["wheel"] and j["wheel"]["filename"], j["seconds"])
        for j in report["jobs"]
    }


# --- merge -------------------------------------------------------------------------------


def test_merging_shard_reports_gives_the_unsharded_report() -> None:
    plan = matrix_plan()
    statuses = {"cp311-manylinux_2_31_aarch64": "failed", "dep:zstd:x86_64": "failed"}
    full = make_report(plan.jobs, statuses, excluded=plan.excluded)
    seconds = {j["id"]: j["seconds"] for j in full["jobs"]}
    shards = plan.shards(2)
    assert len(shards) == 2 and all(shards)
    parts = []
    for k, jobs in enumerate(shards, start=1):
        part = make_report(
            jobs,
            statuses,
            run_id=f"run-{k}",
            shard=f"{k}/2",
            started=T0 + 100 * k,
            excluded=plan.excluded,
        )
        for j in part["jobs"]:  # the same job takes the same time in either run
            j["seconds"] = seconds[j["id"]]
        parts.append(part)

    merged = merge(list(reversed(parts)))

    assert _job_view(merged) == _job_view(full)
    assert sorted(d["key"] + d["status"] for d in merged["deps"]) == sorted(
        d["key"] + d["status"] for d in full["deps"]
    )
    assert len(merged["images"]) == len(full["images"]) == 4
    assert merged["excluded"] == full["excluded"]  # every shard repeats them: kept once
    assert merged["shards"] == ["run-1", "run-2"]  # oldest first, whatever the argument order
    assert merged["started"] == T0 + 100 and merged["finished"] == T0 + 200 + 600
    assert merged["duplicates"] == []
    assert merged["shard"] is None and merged["run_id"].startswith("merged-")
    assert {j["shard"] for j in merged["jobs"]} == {"1/2", "2/2"}


def test_a_rerun_shard_replaces_the_failed_result_and_is_noted() -> None:
    job = make_job("3.11", "x86_64")
    first = make_report([job], {job.id: "failed"}, run_id="run-a", started=T0)
    rerun = make_report([job], {}, run_id="run-b", started=T0 + 3600)

    for order in ([first, rerun], [rerun, first]):
        merged = merge(order)
        assert [j["status"] for j in merged["jobs"]] == ["ok"]
        assert merged["jobs"][0]["run_id"] == "run-b"
        (dup,) = merged["duplicates"]
        assert dup["id"] == job.id
        assert dup["kept"] == {"run_id": "run-b", "shard": None, "status": "ok"}
        assert dup["dropped"]["status"] == "failed"


def test_an_ok_result_beats_a_later_failure_and_the_later_of_two_ok_wins() -> None:
    job = make_job("3.9", "x86_64")
    ok = make_report([job], run_id="run-ok", started=T0)
    later_failure = make_report([job], {job.id: "failed"}, run_id="run-late", started=T0 + 10)
    assert merge([ok, later_failure])["jobs"][0]["run_id"] == "run-ok"
    later_ok = make_report([job], run_id="run-late-ok", started=T0 + 20)
    merged = merge([later_ok, ok])
    assert merged["jobs"][0]["run_id"] == "run-late-ok"
    assert merged["duplicates"][0]["reason"] == "the later run wins"


def test_merging_a_merged_report_again_keeps_every_source() -> None:
    plan = matrix_plan()
    a, b, c = (
        make_report(jobs, run_id=f"run-{k}", shard=f"{k}/3", started=T0 + k)
        for k, jobs in enumerate(plan.shards(3), start=1)
    )
    twice = merge([merge([a, b]), c])
    once = merge([a, b, c])
    assert _job_view(twice) == _job_view(once)
    assert twice["shards"] == once["shards"] == ["run-1", "run-2", "run-3"]
    assert twice["run_id"] == once["run_id"]


def test_reports_of_different_projects_do_not_merge() -> None:
    a = make_report([make_job("3.9", "x86_64")])
    b = dict(make_report([make_job("3.9", "x86_64")]), name="other")
    with pytest.raises(ConfigError, match="different projects"):
        merge([a, b])
    with pytest.raises(ConfigError):
        merge([])


# --- JUnit -------------------------------------------------------------------------------


def test_junit_has_a_suite_per_platform_and_a_case_per_job() -> None:
    plan = matrix_plan()
    statuses = {
        "cp311-manylinux_2_31_aarch64": "failed",
        "cp39-manylinux_2_17_x86_64": "blocked",
        "dep:zstd:x86_64": "failed",
    }
    report = make_report(plan.jobs, statuses)
    report["jobs"][0]["log_tail"].append(
        "bad byte \x00 and \x1b[1mbold\x1b[0m"
    )  # must not break XML

    root = ET.fromstring(to_junit(report).encode())

    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {
        "manylinux_2_17_x86_64",
        "manylinux_2_17_aarch64",
        "manylinux_2_31_x86_64",
        "manylinux_2_31_aarch64",
        "dependencies",
    }
    assert root.get("tests") == str(8 + 8)  # jobs + dependency builds
    # one failed job, zstd failed in both x86_64 groups, one blocked job
    assert root.get("failures") == "3" and root.get("skipped") == "1"
    failed = suites["manylinux_2_31_aarch64"].find("testcase[@name='cp311-manylinux_2_31_aarch64']")
    assert failed is not None
    failure = failed.find("failure")
    assert failure is not None and failure.get("type") == "audit"
    assert "verification or audit failed" in (failure.get("message") or "")
    assert "needs GLIBC_2.34 (policy allows 2.31)" in (failure.text or "")
    assert "\x1b" not in (failure.text or "")
    seconds = {j["id"]: j["seconds"] for j in report["jobs"]}
    assert float(failed.get("time") or 0) == pytest.approx(seconds["cp311-manylinux_2_31_aarch64"])
    blocked = suites["manylinux_2_17_x86_64"].find("testcase[@name='cp39-manylinux_2_17_x86_64']")
    assert blocked is not None and blocked.find("skipped") is not None
    assert suites["manylinux_2_31_x86_64"].get("failures") == "0"
    dep_failure = suites["dependencies"].find("testcase/failure")
    assert dep_failure is not None and "Error 2" in (dep_failure.get("message") or "")


# --- Markdown ----------------------------------------------------------------------------


def test_markdown_lists_failures_first_with_their_log_tail() -> None:
    report = realistic_report()
    report["jobs"][0]["error"] = "a | pipe"
    md = to_markdown(report)

    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 4
    assert rows[0].startswith("| `cp311-manylinux_2_31_x86_64` | ❌ failed (audit)")
    assert all("✅ ok" in r for r in rows[1:])
    assert "3 of 4 jobs ok, 1 failed" in md
    assert "dependencies: 2 built, 2 cached (50% cache hits)" in md
    details = md.split("<details>", 1)[1]
    assert "cp311-manylinux_2_31_x86_64</b> failed in audit" in details
    assert "memcpy@GLIBC_2.34 from libc.so.6" in details
    assert "audit [symbol-versions] needs GLIBC_2.34 > 2.31" in details
    assert "\x1b" not in md
    # a wheel row: name and size
    assert "`depsdemo-1.0-cp39-cp39-manylinux_2_31_x86_64.whl` | 147 KiB |" in md


def test_markdown_orders_by_python_version_and_folds_ok_rows_of_large_runs() -> None:
    jobs = [
        make_job(py, arch, policy)
        for policy in ("manylinux_2_17", "manylinux_2_28")
        for arch in ("x86_64", "i686", "aarch64")
        for py in ("3.10", "3.9", "3.11", "3.12")
    ]
    md = to_markdown(make_report(jobs, {"cp312-manylinux_2_28_i686": "failed"}))

    main, folded = md.split("<details><summary>23 ok jobs</summary>")
    assert [r for r in main.splitlines() if r.startswith("| `")] == [
        "| `cp312-manylinux_2_28_i686` | ❌ failed (audit) | 59.0s | verification or audit failed | - |"
    ]
    ok_ids = [r.split("`")[1] for r in folded.splitlines() if r.startswith("| `")]
    assert len(ok_ids) == 23
    assert ok_ids[:3] == [
        "cp39-manylinux_2_17_x86_64",
        "cp39-manylinux_2_17_i686",
        "cp39-manylinux_2_17_aarch64",
    ]
    assert ok_ids.index("cp39-manylinux_2_28_aarch64") < ok_ids.index("cp310-manylinux_2_17_x86_64")
    small = to_markdown(make_report(jobs[:4]))
    assert "<details>" not in small  # few jobs: one table
    assert [r.split("`")[1][:5] for r in small.splitlines() if r.startswith("| `")] == [
        "cp39-",
        "cp310",
        "cp311",
        "cp312",
    ]


def test_markdown_fences_a_log_that_contains_backticks() -> None:
    report = realistic_report()
    report["jobs"][1]["log_tail"] = ["```", "inside"]
    md = to_markdown(report)
    assert "````text\n```\ninside\n````" in md


# --- HTML --------------------------------------------------------------------------------


def test_html_is_self_contained_and_has_a_cell_per_job() -> None:
    report = realistic_report()
    report["jobs"][1]["error"] = "<script>alert(1)</script>"
    page = to_html(report)

    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(|<link\b|<iframe\b", page, re.I)
    assert page.count("<script") == 1  # the inline script; the job's error is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for job in report["jobs"]:
        cell = re.search(
            rf'<td class="cell [^"]*" id="cell-{job["id"]}" data-job="{job["id"]}" '
            rf'data-status="([a-z]+)"',
            page,
        )
        assert cell, job["id"]
        assert cell.group(1) == job["status"]
        assert f'id="detail-{job["id"]}"' in page
    assert page.index('id="failures"') < page.index('id="matrix"')
    assert (
        'data-job="cp313-manylinux_2_31_aarch64" data-status="excluded"' not in page
    )  # no 3.13 row
    assert "exports 3 zstd symbols" in page and "ZSTD_isError" in page


def test_html_places_excluded_combinations_in_the_grid() -> None:
    jobs = [make_job("3.9", "x86_64"), make_job("3.11", "x86_64"), make_job("3.9", "i686")]
    report = make_report(jobs, excluded=[Excluded("cp311-manylinux_2_31_i686", "no CPython 3.11")])
    page = to_html(report)
    assert (
        'data-job="cp311-manylinux_2_31_i686" data-status="excluded" title="no CPython 3.11"'
        in page
    )
    assert "<h2>Failures" not in page
    assert 'data-verdict="ok"' in page


def test_parse_job_id_and_formatting() -> None:
    assert parse_job_id("cp311-manylinux_2_31_x86_64") == ("3.11", "manylinux_2_31", "x86_64")
    assert parse_job_id("cp39-musllinux_1_2_armv7l") == ("3.9", "musllinux_1_2", "armv7l")
    assert parse_job_id("pp39-whatever") is None
    assert human_size(512) == "512 B" and human_size(150_000) == "146 KiB"
    assert human_size(15_000) == "14.6 KiB"
    assert human_size(3 * 1024 * 1024) == "3.0 MiB" and human_size(None) == "-"
    assert human_seconds(5.25) == "5.2s" and human_seconds(125) == "2m05s"
    assert human_seconds(3 * 3600 + 120) == "3h02m" and human_seconds(True) == "-"


# --- annotations and checks --------------------------------------------------------------


def test_github_annotations_escape_and_carry_the_log_tail() -> None:
    report = realistic_report()
    report["jobs"][1]["error"] = "100% broken,\nreally"
    report["jobs"][0]["audit"]["findings"].append(
        {
            "check": "rpath",
            "severity": "warning",
            "message": "RPATH $ORIGIN/../lib",
            "items": [],
            "file": None,
        }
    )
    lines = github_annotations(report)
    assert all("\n" not in line for line in lines)
    error = lines[0]
    assert error.startswith("::error title=orch%3A cp311-manylinux_2_31_x86_64 failed in audit::")
    assert "100%25 broken,%0Areally%0A%0Alog tail:%0A" in error
    assert "memcpy@GLIBC_2.34 from libc.so.6" in error
    assert any(
        line.startswith("::warning title=orch audit%3A cp39-manylinux_2_31_x86_64 [rpath]::")
        for line in lines
    )


def test_expect_plan_finds_lost_failed_and_missing_wheels(tmp_path: Path) -> None:
    plan = matrix_plan()
    report = make_report(plan.jobs[:-1], {plan.jobs[0].id: "failed"})
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    present = report["jobs"][1]
    (wheelhouse / present["wheel"]["filename"]).write_bytes(b"not the wheel")

    problems = expect_plan(report, plan.to_json(), wheelhouse)

    text = "\n".join(problems)
    assert f"{plan.jobs[-1].id}: planned but in no report" in text
    assert f"{plan.jobs[0].id}: failed in audit" in text
    assert (
        f"{present['id']}: {wheelhouse / present['wheel']['filename']} does not match the sha256"
        in text
    )
    assert f"{report['jobs'][2]['wheel']['filename']} is not in {wheelhouse}" in text
    assert len(problems) == len(plan.jobs)  # the others are each missing from the wheelhouse
    assert expect_plan(make_report(plan.jobs), plan.to_json()) == []


def test_expect_plan_checks_the_platform_tag_of_the_wheel() -> None:
    job = make_job("3.11", "x86_64")
    report = make_report([job])
    report["jobs"][0]["wheel"]["filename"] = "depsdemo-1.0-cp311-cp311-linux_x86_64.whl"
    plan = Plan("orch.yaml", (job,))
    assert expect_plan(report, plan.to_json()) == [
        f"{job.id}: wheel depsdemo-1.0-cp311-cp311-linux_x86_64.whl does not carry the platform "
        "tag manylinux_2_31_x86_64"
    ]
    compressed = "depsdemo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux_2_31_x86_64.whl"
    report["jobs"][0]["wheel"]["filename"] = compressed
    assert expect_plan(report, plan.to_json()) == []


def test_expect_wheels() -> None:
    report = realistic_report()
    assert expect_wheels(report, ["depsdemo-*-cp39-*x86_64.whl", "*aarch64.whl"]) == []
    assert expect_wheels(report, ["*-cp311-*x86_64.whl"]) == [
        "no wheel matches *-cp311-*x86_64.whl"
    ]


# --- the command -------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    report_cli.configure_parser(parser)
    return report_cli.run(parser.parse_args(argv))


def _write_shards(tmp_path: Path) -> tuple[Plan, list[Path]]:
    plan = matrix_plan()
    paths = []
    for k, jobs in enumerate(plan.shards(2), start=1):
        out = tmp_path / f"shard-{k}" / "wheelhouse"
        (out / ".orch").mkdir(parents=True)
        report = make_report(jobs, run_id=f"run-{k}", shard=f"{k}/2", started=T0 + k)
        (out / ".orch" / "report.json").write_text(json.dumps(report))
        paths.append(out)
    return plan, paths


def test_cli_merges_renders_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan, outs = _write_shards(tmp_path)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.dumps())
    merged, junit, md, page = (tmp_path / "out" / n for n in ("m.json", "j.xml", "r.md", "r.html"))
    (tmp_path / "out").mkdir()  # outputs go only into directories that exist

    rc = _run(
        [
            str(outs[0]),
            str(outs[1] / ".orch" / "report.json"),
            "--merge-out",
            str(merged),
            "--junit",
            str(junit),
            "--markdown",
            str(md),
            "--html",
            str(page),
            "--expect-plan",
            str(plan_file),
        ]
    )

    assert rc == 0
    data = json.loads(merged.read_text())
    assert {j["id"] for j in data["jobs"]} == {j.id for j in plan.jobs}
    assert ET.parse(junit).getroot().get("tests") == str(len(plan.jobs) + 8)
    assert md.read_text().startswith("### orch: depsdemo")
    assert page.read_text().count('<td class="cell st-ok"') == len(plan.jobs)
    assert capsys.readouterr().out == ""  # files only; nothing on stdout

    rc = _run([str(outs[0]), "--expect-plan", str(plan_file)])  # shard 2 missing
    captured = capsys.readouterr()
    assert rc == 1
    assert "planned but in no report" in captured.err
    assert captured.out.startswith("### orch: depsdemo")  # no output option: Markdown on stdout


def test_cli_strict_annotations_and_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps(realistic_report()))
    assert _run([str(report_file), "--github-annotations"]) == 0
    assert capsys.readouterr().out.startswith("::error title=orch%3A cp311-manylinux_2_31_x86_64")
    assert _run([str(report_file), "--github-annotations", "--strict"]) == 1
    assert _run([str(report_file), "--expect-wheels", "*cp39*", "--markdown", "-"]) == 0
    assert "| `cp311-manylinux_2_31_x86_64` |" in capsys.readouterr().out

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        _run([str(tmp_path / "bad.json")])
    future = dict(realistic_report(), schema=99)
    (tmp_path / "future.json").write_text(json.dumps(future))
    with pytest.raises(ConfigError, match="schema 99"):
        _run([str(tmp_path / "future.json")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"without \.orch/report\.json"):
        _run([str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="cannot read report"):
        _run([str(tmp_path / "missing.json")])


def test_the_report_has_the_fields_the_renderers_read() -> None:
    data = make_report([make_job("3.9", "x86_64")])
    assert set(data["jobs"][0]) >= {
        "id",
        "python",
        "arch",
        "policy",
        "status",
        "seconds",
        "wheel",
        "log_tail",
        "audit",
        "verify",
        "failed_stage",
        "error",
    }
