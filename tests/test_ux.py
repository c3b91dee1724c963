"""Mistakes users make, and what orch says back: the exit code and the words that name the
cause and the fix. Each case runs the real CLI in a subprocess, as a user would; none of
them reaches the engine (configuration errors fail before any container exists).

A case is (name, recipe, args, exit code, words): `recipe` is the YAML after
`schema: 1\\nproject: p\\n` (or a whole file when it starts with `schema:`), written next
to a project directory `p`; `{recipe}` and `{dir}` in args are that file and directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.run import orch

ZLIB_SHA = "0" * 64


class Case(NamedTuple):
    name: str
    recipe: str | None
    args: tuple[str, ...]
    exit: int
    words: tuple[str, ...]
    absent: tuple[str, ...] = ()


CASES = [
    # --- selections that build nothing --------------------------------------------------
    Case(
        "build glob for a Python the recipe lacks",
        'build: "cp312-*"\n',
        ("build", "-f", "{recipe}"),
        2,
        ("build", "'cp312-*' matches no job", "CPython 3.12", "python:"),
    ),
    Case(
        "cibuildwheel-style id in --only",
        "",
        ("build", "-f", "{recipe}", "--only", "cp311-manylinux_x86_64"),
        2,
        ("cibuildwheel", "cp311-manylinux_*_x86_64", "cp311-manylinux_2_31_x86_64"),
    ),
    Case(
        "cibuildwheel-style id in skip",
        'skip: "cp39-manylinux_x86_64"\n',
        ("plan", "-f", "{recipe}"),
        2,
        ("skip", "cibuildwheel", "cp39-manylinux_*_x86_64"),
    ),
    Case(
        "Python the image does not have",
        'python: ["3.12"]\n',  # in no Debian suite's sources
        ("build", "-f", "{recipe}"),
        2,
        ("nothing to build", "no CPython 3.12", "has 3.9, 3.11, 3.13", "--allow-empty"),
    ),
    Case(
        "a shard beyond the plan's groups",
        "",
        ("build", "-f", "{recipe}", "--shard", "5/9"),
        2,
        ("nothing to build", "shard 5/9 is empty", "orch matrix --max-shards 9"),
    ),
    Case(
        "typo in --only",
        "",
        ("build", "-f", "{recipe}", "--only", "cp311-manylinux_2_31_x86_46"),
        2,
        ("matches no job", "did you mean cp311-manylinux_2_31_x86_64"),
    ),
    Case(
        "manylinux2014 alias in --only on a recipe without it",
        "",
        ("plan", "-f", "{recipe}", "--only", "cp311-manylinux2014_*"),
        2,
        ("matches no job", "reads as 'cp311-manylinux_2_17_*'"),
    ),
    Case(
        "--only a job the image cannot build",
        'python: ["3.9", "3.12"]\narchs: [x86_64, aarch64]\n',
        ("build", "-f", "{recipe}", "--only", "cp312-manylinux_2_31_aarch64"),
        2,
        ("has no CPython 3.12", "buildable ids nearest", "cp39-manylinux_2_31_aarch64"),
    ),
    Case(
        "skip everything",
        'skip: "*"\n',
        ("build", "-f", "{recipe}"),
        2,
        ("nothing to build", "skipped by skip: *"),
    ),
    Case(
        "an empty selection allowed on purpose",
        'skip: "*"\n',
        ("build", "-f", "{recipe}", "--allow-empty"),
        0,
        ("nothing to build",),
    ),
    # --- environment values are strings --------------------------------------------------
    Case(
        "boolean env value",
        "environment: {DEBUG: true}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("environment.DEBUG", "a boolean", 'DEBUG: "true"'),
    ),
    Case(
        "float env value",
        "environment: {RATIO: 1.10}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("environment.RATIO", 'RATIO: "1.10"'),
    ),
    Case(
        "octal env value",
        "environment: {MODE: 0755}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("environment.MODE", "493", 'MODE: "0755"'),
    ),
    Case(
        "yes/no env value",
        "environment: {FLAG: no}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("environment.FLAG", 'FLAG: "no"'),
    ),
    Case(
        "number in a dependency's build env",
        "dependencies:\n  - use: zlib\n    build: {env: {OPT: 3}}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("dependencies[0].build.env.OPT", 'OPT: "3"'),
    ),
    Case(
        "environment as a list",
        "environment: [A=1]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("environment", "expected an object", "a list"),
    ),
    # --- settings that cannot work ------------------------------------------------------------
    Case(
        "repair tag of one arch for two",
        "archs: [x86_64, aarch64]\nrepair: {plat: manylinux_2_17_x86_64}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("repair.plat", "x86_64 tag", "aarch64", "manylinux_2_17_{arch}"),
    ),
    Case(
        "repair tag without an arch",
        "repair: {plat: manylinux_2_17_x86_46}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("repair.plat", "does not end in an architecture"),
    ),
    Case(
        "repair tag of an unknown policy",
        "repair: {plat: manylinux_2_99_x86_64}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("repair.plat", "not a known policy"),
    ),
    Case(
        "image source typo",
        "images: {manylinux_2_31: pyap}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("images.manylinux_2_31", "'pyap' is not an image source", "did you mean 'pypa'"),
    ),
    Case(
        "local image for a policy orch does not build",
        "platforms: [manylinux_2_28]\nimages: {manylinux_2_28: local}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("images.manylinux_2_28", "no local manylinux_2_28", "manylinux_2_31"),
    ),
    Case(
        "image for a policy not in platforms",
        "images: {manylinux_2_13: pypa}\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("not among the recipe's platforms", "manylinux_2_31"),
    ),
    Case(
        "downgrade check name typo",
        "audit:\n  downgrade: [{check: exported-stdd, severity: warning, reason: ok}]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("audit.downgrade[0].check", "did you mean 'exported-std'"),
    ),
    Case(
        "downgrade severity typo",
        "audit:\n  downgrade: [{check: rpath, severity: warn, reason: ok}]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("severity", "did you mean 'warning'"),
    ),
    Case("-j 0", "", ("build", "-f", "{recipe}", "-j", "0"), 2, ("-j/--jobs", "at least 1")),
    Case(
        "-j negative", "", ("build", "-f", "{recipe}", "-j", "-3"), 2, ("-j/--jobs", "at least 1")
    ),
    Case("-j a word", "", ("build", "-f", "{recipe}", "-j", "four"), 2, ("not a whole number",)),
    Case(
        "--max-shards 0",
        "",
        ("matrix", "-f", "{recipe}", "--max-shards", "0"),
        2,
        ("--max-shards", "at least 1"),
    ),
    Case(
        "--shard K > N",
        "",
        ("plan", "-f", "{recipe}", "--shard", "3/2"),
        2,
        ("--shard", "1 <= K <= N"),
    ),
    Case(
        "--shard without N",
        "",
        ("plan", "-f", "{recipe}", "--shard", "2"),
        2,
        ("--shard", "K/N", "2/4"),
    ),
    Case("--shard 0/4", "", ("plan", "-f", "{recipe}", "--shard", "0/4"), 2, ("1 <= K <= N",)),
    Case(
        "ppc64le on bullseye's local images",
        "archs: [x86_64, ppc64le]\n",
        ("plan", "-f", "{recipe}"),
        0,
        ("excluded cp39-manylinux_2_31_ppc64le", "no longer serves ppc64le", "manylinux_2_36"),
    ),
    Case(
        "only s390x on bullseye",
        "archs: [s390x]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("does not exist for s390x", "no longer serves s390x"),
    ),
    # --- messages that teach ------------------------------------------------------------------
    Case(
        "--arch typo",
        "archs: [x86_64, aarch64]\n",
        ("plan", "-f", "{recipe}", "--arch", "aarch46"),
        2,
        ("--arch", "'aarch46'", "did you mean 'aarch64'"),
        ("*_aarch46",),
    ),
    Case(
        "--arch not in the recipe",
        "",
        ("plan", "-f", "{recipe}", "--arch", "aarch64"),
        2,
        ("--arch aarch64", "does not build aarch64", "archs: x86_64"),
    ),
    Case(
        "comma-separated --arch",
        "archs: [x86_64, aarch64]\n",
        ("build", "-f", "{recipe}", "--arch", "x86_64,aarch64", "--print-build-identifiers"),
        0,
        ("cp39-manylinux_2_31_x86_64", "cp39-manylinux_2_31_aarch64"),
    ),
    Case(
        "a dependency as a bare name",
        "dependencies: [zlib]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("dependencies[0]", "- use: zlib"),
    ),
    Case(
        "requires a recipe that does not exist",
        "dependencies:\n  - use: zstd\n    requires: [zlibx]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("requires 'zlibx'", "did you mean 'zlib'", "no library recipe is named 'zlibx'"),
        ("- use: zlibx",),
    ),
    Case(
        "requires a library recipe not listed",
        "dependencies:\n  - use: zstd\n    requires: [zlib]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("requires 'zlib'", "- use: zlib"),
    ),
    Case(
        "unknown library recipe",
        "dependencies: [{use: zlibb}]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("no library recipe 'zlibb'", "did you mean 'zlib'"),
    ),
    Case(
        "schema 2",
        "schema: 2\nproject: p\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("schema: 2", "supported: 1", "schema: 1"),
    ),
    Case(
        "unknown key",
        "platform: [manylinux_2_31]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("unknown key 'platform'", "did you mean 'platforms'"),
    ),
    Case(
        "bare 3.10",
        "python: [3.10]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("python[0]", "quote versions"),
    ),
    Case(
        "policy typo",
        "platforms: [manylinux2015]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("'manylinux2015' is not a known policy", "did you mean"),
    ),
    Case(
        "arch name of another tool",
        "archs: [arm64]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("'arm64' is not a known architecture", "aarch64"),
    ),
    Case(
        "missing project",
        "schema: 1\nproject: nowhere\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("project", "does not exist"),
    ),
    Case(
        "missing recipe file",
        None,
        ("plan", "-f", "{dir}/nope.yaml"),
        2,
        ("nope.yaml", "no such recipe file"),
    ),
    Case(
        "unknown flag on a subcommand",
        "",
        ("plan", "-f", "{recipe}", "--bogus"),
        2,
        ("usage: orch plan", "unrecognized arguments: --bogus"),
    ),
    Case(
        "misspelt flag",
        "",
        ("build", "-f", "{recipe}", "--olny", "x"),
        2,
        ("usage: orch build", "did you mean --only"),
    ),
    Case(
        "cache pull without --key",
        None,
        ("cache", "pull", "127.0.0.1:1"),
        2,
        ("usage: orch cache pull", "--key"),
    ),
    Case(
        "build-local arch typo",
        None,
        ("images", "build-local", "--arch", "x86-64"),
        2,
        ("did you mean 'x86_64'",),
    ),
    Case(
        "build-local suite typo",
        None,
        ("images", "build-local", "--suite", "buster"),
        2,
        ("invalid choice", "bullseye"),
    ),
    Case(
        "build-local on a suite that no longer serves the architecture",
        None,
        ("images", "build-local", "--arch", "ppc64le", "--suite", "bullseye"),
        2,
        ("--suite bullseye", "no longer serves ppc64le", "use --suite bookworm"),
    ),
    Case(
        "report into a missing directory",
        None,
        ("report", "{dir}/report.json", "--html", "{dir}/nonexistent-dir/x.html"),
        2,
        ("--html", "{dir}/nonexistent-dir", "does not exist", "mkdir -p"),
    ),
    Case(
        "report into a directory",
        None,
        ("report", "{dir}/report.json", "--junit", "{dir}"),
        2,
        ("--junit", "is a directory"),
    ),
    Case(
        "wheelhouse under a directory that does not exist",
        "",
        ("build", "-f", "{recipe}", "-o", "{dir}/typo/wheelhouse"),
        2,
        ("-o {dir}/typo/wheelhouse", "does not exist", "mkdir -p {dir}/typo"),
    ),
    Case(
        "report under a directory that does not exist",
        "",
        ("build", "-f", "{recipe}", "-o", "{dir}", "--report", "/nonexistent-orch/r.json"),
        2,
        ("--report", "/nonexistent-orch", "does not exist"),
    ),
    Case(
        "a patch in an override is the user's file",
        "dependencies:\n  - use: zlib\n    source:\n      url: http://127.0.0.1:9/z.tar.gz\n"
        f"      sha256: '{ZLIB_SHA}'\n      patches: [missing.patch]\n",
        ("plan", "-f", "{recipe}"),
        2,
        ("patch", "{dir}/missing.patch", "does not exist"),
    ),
]


def _setup(tmp_path: Path, recipe: str | None) -> Path:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "setup.py").write_text("")
    (tmp_path / "report.json").write_text(json.dumps({"schema": 1, "name": "r", "jobs": []}))
    file = tmp_path / "orch.yaml"
    if recipe is not None:
        file.write_text(
            recipe if recipe.startswith("schema:") else "schema: 1\nproject: p\n" + recipe
        )
    return file


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_mistake(case: Case, tmp_path: Path) -> None:
    file = _setup(tmp_path, case.recipe)
    args = [a.replace("{recipe}", str(file)).replace("{dir}", str(tmp_path)) for a in case.args]
    done = orch(*args, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == case.exit, said
    for word in case.words:
        assert word.replace("{dir}", str(tmp_path)) in said, f"{word!r} not in:\n{said}"
    for word in case.absent:
        assert word not in said, f"{word!r} should not be in:\n{said}"
    assert "Traceback" not in said


def test_there_are_at_least_forty_mistakes() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 40


def test_a_selection_matching_nothing_fails_build_before_any_container(tmp_path: Path) -> None:
    file = _setup(tmp_path, 'python: ["3.9"]\nskip: ["cp39-*"]\n')
    done = orch("build", "-f", str(file), "-o", str(tmp_path / "wh"), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cp39-manylinux_2_31_x86_64: skipped by skip: cp39-*" in done.stderr
    assert not (tmp_path / "wh").exists()  # nothing started, nothing written


def test_manylinux2014_in_skip_means_manylinux_2_17(tmp_path: Path) -> None:
    file = _setup(
        tmp_path,
        'python: ["3.9"]\nplatforms: [manylinux2014, manylinux_2_31]\nskip: "*-manylinux2014_*"\n',
    )
    done = orch("plan", "-f", str(file), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [j["id"] for j in data["jobs"]] == ["cp39-manylinux_2_31_x86_64"]
    assert {e["id"]: e["reason"] for e in data["excluded"] if e["kind"] == "deselected"} == {
        "cp39-manylinux_2_17_x86_64": "skipped by skip: *-manylinux2014_*"
    }


def test_print_build_identifiers_lists_the_selection(tmp_path: Path) -> None:
    file = _setup(tmp_path, 'python: ["3.9", "3.11"]\nplatforms: [manylinux2014]\n')
    done = orch(
        "build",
        "-f",
        str(file),
        "--only",
        "cp3*-manylinux2014_*",
        "--print-build-identifiers",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cp39-manylinux_2_17_x86_64", "cp311-manylinux_2_17_x86_64"]


def test_pypa_jobs_name_their_verify_image(tmp_path: Path) -> None:
    file = _setup(tmp_path, 'python: ["3.11"]\nplatforms: [manylinux_2_28]\n')
    done = orch("plan", "-f", str(file), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    (job,) = json.loads(done.stdout)["jobs"]
    assert job["runtime_image"] == job["image"] == "quay.io/pypa/manylinux_2_28_x86_64"
    assert job["verify_images"] == [job["runtime_image"]]
    table = orch("plan", "-f", str(file), timeout=120)
    assert table.returncode == 0 and "verified in" in table.stdout


def test_an_override_patch_next_to_the_recipe_is_found(tmp_path: Path) -> None:
    file = _setup(
        tmp_path,
        "dependencies:\n  - use: zlib\n    source:\n      url: http://127.0.0.1:9/z.tar.gz\n"
        f"      sha256: '{ZLIB_SHA}'\n      patches: [fix.patch]\n",
    )
    (tmp_path / "fix.patch").write_text("")
    done = orch("plan", "-f", str(file), timeout=120)
    assert done.returncode == 0, done.stderr


def test_report_to_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    _setup(tmp_path, "")
    target = tmp_path / "no" / "such" / "r.html"
    done = orch("report", str(tmp_path / "report.json"), "--html", str(target))
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert not (tmp_path / "no").exists()
