"""requires-python: read from the project's metadata; jobs outside it are excluded in the
plan with the reason, never built; a recipe naming such a version explicitly gets a warning."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from orchestrator.recipe.model import ProjectSource
from orchestrator.recipe.requires_python import RequiresPython, read_requires_python
from tests.support.run import ROOT


def _project(tmp_path: Path, requires: str | None) -> Path:
    proj = tmp_path / "p"
    proj.mkdir()
    line = f'requires-python = "{requires}"\n' if requires else ""
    (proj / "pyproject.toml").write_text(f'[project]\nname = "p"\nversion = "1"\n{line}')
    return proj


def _sdist(tmp_path: Path, pkg_info: str, pyproject: str | None = None) -> Path:
    path = tmp_path / "demo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        files = {"demo-1.0/PKG-INFO": pkg_info, "demo-1.0/setup.py": ""}
        if pyproject is not None:
            files["demo-1.0/pyproject.toml"] = pyproject
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _recipe(tmp_path: Path, project: str, python: str | None) -> Path:
    f = tmp_path / "orch.yaml"
    body = f"schema: 1\nproject: {project}\n"
    if python is not None:
        body += f"python: {python}\n"
    f.write_text(body)
    return f


@pytest.mark.parametrize(
    ("spec", "allowed", "refused"),
    [
        (">=3.10", ["3.10", "3.11", "3.14"], ["3.9", "3.8"]),
        (">=3.9,<3.13", ["3.9", "3.12"], ["3.13", "3.8"]),
        ("!=3.10.*,>=3.9", ["3.9", "3.11"], ["3.10"]),
        (">=3.10.2", ["3.10", "3.11"], ["3.9"]),  # some 3.10 patch release satisfies it
        ("~=3.11", ["3.11", "3.13"], ["3.10"]),
    ],
)
def test_allows_by_minor_version(spec: str, allowed: list[str], refused: list[str]) -> None:
    req = RequiresPython(spec, "x")
    assert [v for v in allowed if not req.allows(v)] == []
    assert [v for v in refused if req.allows(v)] == []


def test_read_from_pyproject_and_setup_cfg(tmp_path: Path) -> None:
    proj = _project(tmp_path, ">=3.10")
    found = read_requires_python(ProjectSource(proj, "directory"))
    assert found is not None and found.text == ">=3.10"
    assert found.origin == str(proj / "pyproject.toml")
    (proj / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    (proj / "setup.cfg").write_text("[options]\npython_requires = >=3.11\n")
    found = read_requires_python(ProjectSource(proj, "directory"))
    assert found is not None and found.text == ">=3.11" and found.origin.endswith("setup.cfg")
    (proj / "setup.cfg").unlink()
    assert read_requires_python(ProjectSource(proj, "directory")) is None


def test_read_from_sdist_pkg_info_first(tmp_path: Path) -> None:
    sdist = _sdist(
        tmp_path,
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Python: >=3.10\n\nlong text\n",
        pyproject='[project]\nrequires-python = ">=3.6"\n',
    )
    found = read_requires_python(ProjectSource(sdist, "sdist"))
    assert found is not None
    assert (found.text, found.origin) == (">=3.10", "demo-1.0.tar.gz:demo-1.0/PKG-INFO")


def test_sdist_without_pkg_info_field_falls_back_to_pyproject(tmp_path: Path) -> None:
    sdist = _sdist(
        tmp_path,
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        pyproject='[project]\nrequires-python = ">=3.12"\n',
    )
    found = read_requires_python(ProjectSource(sdist, "sdist"))
    assert found is not None and found.text == ">=3.12"
    assert found.origin == "demo-1.0.tar.gz:demo-1.0/pyproject.toml"


def test_invalid_specifier_names_the_file_and_the_fix(tmp_path: Path) -> None:
    proj = _project(tmp_path, ">=three")
    with pytest.raises(ConfigError) as exc:
        read_requires_python(ProjectSource(proj, "directory"))
    assert str(proj / "pyproject.toml") in str(exc.value)
    assert "not a valid version specifier" in str(exc.value)


def test_plan_excludes_versions_outside_with_reason_and_warns(tmp_path: Path) -> None:
    _project(tmp_path, ">=3.10")
    plan = make_plan(load_recipe(_recipe(tmp_path, "p", "['3.9', '3.11']")), host_arch="x86_64")
    assert [j.id for j in plan.jobs] == ["cp311-manylinux_2_31_x86_64"]
    (ex,) = plan.excluded
    assert ex.id == "cp39-manylinux_2_31_x86_64"
    assert "requires-python >=3.10" in ex.reason and "pyproject.toml" in ex.reason
    (warning,) = plan.warnings
    assert "orch.yaml:3:" in warning and "3.9" in warning and "3.11" not in warning
    assert json.loads(plan.dumps())["warnings"] == [warning]
    # selecting and sharding keep the warning and the exclusion
    assert plan.select(["cp311-*"]).warnings == plan.warnings
    assert plan.shard(1, 1).excluded == plan.excluded


def test_default_pythons_outside_are_excluded_without_warning(tmp_path: Path) -> None:
    _project(tmp_path, ">=3.10")
    plan = make_plan(load_recipe(_recipe(tmp_path, "p", None)), host_arch="x86_64")
    assert "cp39-manylinux_2_31_x86_64" in {e.id for e in plan.excluded}
    assert all(j.python != "3.9" for j in plan.jobs)
    assert plan.warnings == ()


def test_sdist_project_plan(tmp_path: Path) -> None:
    _sdist(tmp_path, "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Python: <3.10\n")
    plan = make_plan(
        load_recipe(_recipe(tmp_path, "demo-1.0.tar.gz", "['3.9', '3.11']")), host_arch="x86_64"
    )
    assert [j.id for j in plan.jobs] == ["cp39-manylinux_2_31_x86_64"]
    assert "demo-1.0.tar.gz:demo-1.0/PKG-INFO" in plan.excluded[0].reason


def test_cli_plan_warns_on_stderr_and_keeps_json_clean(tmp_path: Path) -> None:
    _project(tmp_path, ">=3.10")
    f = _recipe(tmp_path, "p", "['3.9', '3.11']")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "plan", "-f", str(f), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert [j["id"] for j in data["jobs"]] == ["cp311-manylinux_2_31_x86_64"]
    assert "warning:" in proc.stderr and "requires-python >=3.10" in proc.stderr
