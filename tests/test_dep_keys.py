"""The dependency key hashes what orch generates to build a dependency (flags,
configure/cmake/meson arguments, post-install, packaging) and its network flag, so a
change of orch's generator can never reuse a stale artifact; `network` is in the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.deps import buildsys
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from tests.test_cache import key_of, make_dep


@pytest.mark.parametrize(
    ("name", "new"),
    [
        ("BASE_CFLAGS", "-O3 -fPIC -fvisibility=hidden"),
        ("EXCLUDE_LIBS", "-Wl,--exclude-libs,NONE"),  # not in the build: must NOT change
    ],
)
def test_key_follows_the_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, new: str
) -> None:
    dep = make_dep()
    before = key_of(dep, tmp_path)
    monkeypatch.setattr(buildsys, name, new)
    after = key_of(dep, tmp_path)
    if name == "EXCLUDE_LIBS":  # only used for the project's flags, not the dependency's
        assert after == before
    else:
        assert after != before


@pytest.mark.parametrize(
    "generator",
    ["cmake_args", "configure_args", "meson_args", "package_script", "_post_install"],
)
def test_each_generated_part_is_in_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generator: str
) -> None:
    system = {"configure_args": "autotools", "meson_args": "meson"}.get(generator, "cmake")
    dep = make_dep(build_system=system)
    before = key_of(dep, tmp_path)
    original = getattr(buildsys, generator)

    def changed(*args: object, **kwargs: object) -> object:
        out = original(*args, **kwargs)
        return [*out, "--changed"] if isinstance(out, list) else out + " # changed"

    monkeypatch.setattr(buildsys, generator, changed)
    assert key_of(dep, tmp_path) != before


def test_key_ignores_the_job_count_and_origin(tmp_path: Path) -> None:
    dep = make_dep()
    assert key_of(dep, tmp_path) == key_of(make_dep(origin="other.yaml:99"), tmp_path)
    assert "-j 1" in buildsys.rendered_steps(dep)  # fixed, whatever -j the run uses


def test_network_flag_is_in_the_key(tmp_path: Path) -> None:
    assert key_of(make_dep(), tmp_path) != key_of(make_dep(network=True), tmp_path)


RECIPE = """\
schema: 1
project: {{path: .}}
python: ["3.11"]
archs: [x86_64]
dependencies:
  - name: offline
    version: "1"
    source: {{url: http://127.0.0.1:9/a.tar.gz, sha256: "{sha}"}}
    build: {{system: make}}
  - name: online
    version: "1"
    source: {{url: http://127.0.0.1:9/b.tar.gz, sha256: "{sha}"}}
    build: {{system: make}}
    network: {network}
"""


def _write(tmp_path: Path, network: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\nversion='1'\n")
    path = tmp_path / "orch.yaml"
    path.write_text(RECIPE.format(sha="ab" * 32, network=network))
    return path


def test_network_is_loaded_and_shown_in_the_plan(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, "true"))
    assert [d.network for d in recipe.dependencies] == [False, True]
    plan = make_plan(recipe)
    assert json.loads(plan.dumps())["dependency_network"] == ["online"]


def test_network_must_be_a_boolean(tmp_path: Path) -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="network"):
        load_recipe(_write(tmp_path, '"yes"'))
