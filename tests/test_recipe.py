"""Recipe loading: valid recipes become the model; every kind of broken recipe gives one
message naming file:line:column and the field (and the config-error exit code)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import EXIT_CONFIG, ConfigError
from orchestrator.recipe import load_recipe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello-bz2"


def write(tmp_path: Path, text: str, project: bool = True) -> Path:
    if project:
        (tmp_path / "proj").mkdir(exist_ok=True)
        (tmp_path / "proj" / "pyproject.toml").write_text("[project]\nname='x'\nversion='1'\n")
    f = tmp_path / "orch.yaml"
    f.write_text(textwrap.dedent(text).lstrip())
    return f


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    return str(info.value)


def test_example_recipe_loads() -> None:
    r = load_recipe(EXAMPLE / "orch.yaml")
    assert r.name == "bzdemo"
    assert r.python == ("3.9", "3.11")
    assert r.platforms == ("manylinux_2_31",)
    assert r.project.kind == "directory" and r.project.path == EXAMPLE
    assert r.test.imports == ("bzdemo",)


def test_defaults_and_sdist(tmp_path: Path) -> None:
    sdist = tmp_path / "x-1.0.tar.gz"
    sdist.write_bytes(b"")
    f = write(tmp_path, "schema: 1\nproject: x-1.0.tar.gz\n", project=False)
    r = load_recipe(f)
    assert r.project.kind == "sdist"
    assert r.archs == ("x86_64",) and r.platforms == ("manylinux_2_31",)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\npython: [3.9\n")
    msg = error_of(f)
    assert f"{f}:4:1" in msg and "YAML syntax error" in msg


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\npythn: ['3.9']\n")
    msg = error_of(f)
    assert f"{f}:3:1" in msg
    assert "unknown key 'pythn'" in msg and "did you mean 'python'" in msg


def test_nested_unknown_key(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\nrepair:\n  exclde: [a]\n")
    msg = error_of(f)
    assert f"{f}:4:3" in msg and "repair.exclde" in msg and "'exclude'" in msg


def test_bad_policy(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\nplatforms: [manylinux_2_31, manylinux2015]\n")
    msg = error_of(f)
    assert f"{f}:3:29" in msg
    assert "platforms[1]: 'manylinux2015' is not a known policy" in msg
    assert "manylinux2014" in msg  # named among the known ones


def test_impossible_policy_arch(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\nplatforms: [manylinux1]\narchs: [aarch64]\n")
    msg = error_of(f)
    assert "platforms[0]: manylinux1 does not exist for aarch64" in msg and "x86_64, i686" in msg


def test_wrong_type_and_float_version(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\npython: [3.10]\n")
    msg = error_of(f)
    assert "python[0]: expected a string" in msg and "quote versions" in msg


def test_missing_project(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: nowhere\n")
    msg = error_of(f)
    assert f"{f}:2:10" in msg and "does not exist" in msg


def test_missing_required(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\n")
    assert "'project' is required" in error_of(f)


def test_unknown_arch(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\narchs: [arm64]\n")
    msg = error_of(f)
    assert "archs[0]: 'arm64' is not a known architecture" in msg


def test_cli_exit_code_and_no_engine_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A config error must stop before the engine is even contacted.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    f = write(tmp_path, "schema: 1\nproject: proj\nplatforms: [manylinux2015]\n")
    assert main(["build", "-f", str(f), "-o", str(tmp_path / "wh")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "manylinux2015" in err
    assert not (tmp_path / "wh").exists()


DEP = """
  - name: {name}
    version: "1"
    source: {{url: "http://127.0.0.1/{name}.tar.gz", sha256: "{sha}"}}
    build: {{system: make}}
    requires: {requires}
"""


def dep_recipe(tmp_path: Path, deps: list[tuple[str, list[str]]], sha: str = "a" * 64) -> Path:
    body = "".join(DEP.format(name=n, sha=sha, requires=r) for n, r in deps)
    return write(tmp_path, "schema: 1\nproject: proj\ndependencies:" + body)


def test_dependency_dag_and_order(tmp_path: Path) -> None:
    from orchestrator.plan.jobs import make_plan

    f = dep_recipe(tmp_path, [("png", ["z"]), ("z", []), ("xslt", ["xml"]), ("xml", ["z"])])
    plan = make_plan(load_recipe(f))
    order = list(plan.dep_order)
    assert order.index("z") < order.index("png")
    assert order.index("xml") < order.index("xslt") and order.index("z") < order.index("xml")


def test_dependency_cycle(tmp_path: Path) -> None:
    f = dep_recipe(tmp_path, [("a", ["b"]), ("b", ["a"])])
    msg = error_of(f)
    assert "dependency cycle" in msg and "a -> b -> a" in msg


def test_unknown_dependency(tmp_path: Path) -> None:
    f = dep_recipe(tmp_path, [("a", ["zz"])])
    assert "requires 'zz'" in error_of(f)


def test_missing_checksum(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        """
        schema: 1
        project: proj
        dependencies:
          - name: a
            version: "1"
            source: {url: "http://x/a.tar.gz"}
            build: {system: make}
        """,
    )
    msg = error_of(f)
    assert "dependencies[0].source" in msg and "'sha256' is required" in msg and f"{f}:6:" in msg


def test_bad_checksum_format(tmp_path: Path) -> None:
    f = dep_recipe(tmp_path, [("a", [])], sha="xyz")
    assert "expected 64 lowercase hex digits" in error_of(f)


def test_use_library_recipe_with_override(tmp_path: Path) -> None:
    lib = tmp_path / "recipes"
    lib.mkdir()
    (lib / "mylib.yaml").write_text(
        textwrap.dedent(
            """
        schema: 1
        name: mylib
        version: "2.0"
        source: {url: "http://127.0.0.1/mylib-2.0.tar.gz", sha256: "%s"}
        build: {system: cmake, options: ["-DA=1"]}
        exports: {libs: [mylib]}
        """
            % ("b" * 64)
        )
    )
    f = write(
        tmp_path,
        """
        schema: 1
        project: proj
        dependencies:
          - use: mylib
            build: {options: ["-DA=2"]}
        """,
    )
    dep = load_recipe(f).dependencies[0]
    assert dep.name == "mylib" and dep.version == "2.0"
    assert dep.build_system == "cmake" and dep.options == ("-DA=2",)
    assert dep.exports.libs == ("mylib",)
    assert dep.origin.startswith(str(lib / "mylib.yaml"))


def test_use_unknown_library_recipe(tmp_path: Path) -> None:
    f = write(tmp_path, "schema: 1\nproject: proj\ndependencies:\n  - use: zlbi\n")
    msg = error_of(f)
    assert f"{f}:4:10" in msg and "no library recipe 'zlbi'" in msg


def test_schema_is_valid_json_schema() -> None:
    from jsonschema import Draft202012Validator

    from orchestrator.recipe import schema

    Draft202012Validator.check_schema(schema())
