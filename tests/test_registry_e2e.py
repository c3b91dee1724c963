"""A real OCI registry on 127.0.0.1 as (1) a dependency cache shared by machines and (2) a
mirror for pypa image references: the pull path, tested without any outside registry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import orch
from tests.support.depworld import dep_status, write_recipe
from tests.support.registry import Registry, start_registry
from tests.support.run import wheel_platforms, wheel_stem

pytestmark = pytest.mark.docker


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    yield from start_registry(tmp_path / "registry", None)


def test_registry_dependency_cache_across_machines(
    x86_images: tuple[str, str],
    world,  # type: ignore[no-untyped-def]
    registry: Registry,
    tmp_path: Path,
) -> None:
    tmp, base, tarballs, _ = world
    recipe = write_recipe(tmp, base, tarballs, python='["3.9"]')
    env = {"ORCH_CACHE_REGISTRY": registry.url, "ORCH_CACHE_DIR": str(tmp_path / "machine-a")}
    first = orch("build", "-f", str(recipe), "-o", str(tmp / "wh1"), "--plain", env=env)
    assert first.returncode == 0, first.stderr
    assert set(dep_status(tmp / "wh1").values()) == {"built"}
    # pushed into the project's own repository (orch/deps/<recipe name>)
    repos = registry.storage / "docker/registry/v2/repositories"
    assert [p.relative_to(repos).as_posix() for p in repos.glob("orch/deps/*")] == [
        "orch/deps/proj"
    ]
    # Another machine: empty local cache, same registry -> nothing is built.
    env["ORCH_CACHE_DIR"] = str(tmp_path / "machine-b")
    second = orch("build", "-f", str(recipe), "-o", str(tmp / "wh2"), "--plain", env=env)
    assert second.returncode == 0, second.stderr
    assert set(dep_status(tmp / "wh2").values()) == {"cached"}
    assert "registry hit" in second.stderr


def test_pypa_reference_pulled_through_mirror(
    x86_images: tuple[str, str], registry: Registry, project_copy: Path, tmp_path: Path
) -> None:
    build_ref, _runtime = x86_images
    ref = "quay.io/pypa/manylinux2014_x86_64"
    mirror_ref = f"{registry.url}/pypa/manylinux2014_x86_64"
    if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0:
        pytest.fail(f"{ref} is present locally; the test needs it absent to exercise the pull")
    # Stand-in content: our manylinux_2_31 build image, served under the mirrored name.
    subprocess.run(["docker", "tag", build_ref, mirror_ref], check=True)
    subprocess.run(["docker", "push", mirror_ref], check=True, capture_output=True)
    subprocess.run(["docker", "rmi", mirror_ref], check=True, capture_output=True)
    recipe = project_copy / "orch.yaml"
    recipe.write_text(
        recipe.read_text()
        .replace("platforms: [manylinux_2_31]", "platforms: [manylinux2014]")
        .replace('python: ["3.9", "3.11"]', 'python: ["3.9"]')
    )
    out = tmp_path / "wh"
    try:
        proc = orch(
            "build",
            "-f",
            str(recipe),
            "-o",
            str(out),
            "--plain",
            env={"ORCH_IMAGE_MIRROR": f"quay.io/pypa={registry.url}/pypa"},
        )
        assert proc.returncode == 0, proc.stderr
        (wheel,) = out.glob("*.whl")
        assert wheel_stem(wheel.name) == "orch_example_bzdemo-1.0.0-cp39-cp39"
        assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64"} <= wheel_platforms(wheel.name)
        report = json.loads((out / ".orch" / "report.json").read_text())
        assert report["images"][0]["status"] == "pulled" and report["images"][0]["ref"] == ref
    finally:
        subprocess.run(["docker", "rmi", "-f", ref, mirror_ref], capture_output=True)
