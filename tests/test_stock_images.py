"""Stock distribution images: Debian suites with their system python3 (no /opt/python),
where wheels are installed into a venv as users do; the default stock image per wheel;
a pinned sdist checked before anything is built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.images import stock
from orchestrator.pipeline.verify import wheel_tags
from orchestrator.recipe import load_recipe
from tests.conftest import EXAMPLES, orch


def test_stock_suites_are_defined_with_python_and_glibc() -> None:
    suites = stock.suites()
    assert {"bullseye", "bookworm", "trixie"} <= set(suites)
    assert (suites["bookworm"].python, suites["bookworm"].glibc) == ("3.11", (2, 36))
    assert (suites["trixie"].python, suites["trixie"].glibc) == ("3.13", (2, 41))
    for s in suites.values():
        assert {"x86_64", "aarch64"} <= set(s.archs)
        ref = s.ref("x86_64")
        assert ref.startswith(f"orch-stock/debian-{s.suite}_x86_64:") and ref == s.ref("x86_64")
        assert s.ref("aarch64") != ref


def test_default_stock_image_matches_python_and_nearest_glibc() -> None:
    assert stock.choose_default("3.11", (2, 17), "x86_64") == "stock:bookworm"
    assert stock.choose_default("3.9", (2, 5), "aarch64") == "stock:bullseye"
    assert stock.choose_default("3.13", (2, 31), "x86_64") == "stock:trixie"
    # a wheel needing a newer glibc than the suite has, or a Python no suite ships: none
    assert stock.choose_default("3.11", (2, 39), "x86_64") is None
    assert stock.choose_default("3.12", (2, 17), "x86_64") is None
    assert stock.choose_default("3.13", (2, 17), "i686") is None  # trixie has no i386 here


def test_wheel_tags_give_version_and_free_threading() -> None:
    tags = wheel_tags(Path("x-1-cp313-cp313t-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"))
    assert (tags.version, tags.free_threaded, tags.min_glibc) == ("3.13", True, (2, 17))
    tags = wheel_tags(Path("x-1-cp311-cp311-manylinux_2_31_x86_64.whl"))
    assert (tags.version, tags.free_threaded) == ("3.11", False)
    assert wheel_tags(Path("x-1-py3-none-manylinux_2_17_x86_64.whl")).version is None


def test_unknown_stock_suite_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no stock image definition stock:jessie"):
        stock.ensure_stock_image("stock:jessie", "x86_64")
    with pytest.raises(ConfigError, match="has no i686 image"):
        stock.ensure_stock_image("stock:trixie", "i686")


def _sdist_recipe(tmp_path: Path, sha: str) -> Path:
    sdist = tmp_path / "demo-1.0.tar.gz"
    sdist.write_bytes(b"not really an sdist, but a file with a hash")
    recipe = tmp_path / "orch.yaml"
    recipe.write_text(f"schema: 1\nproject:\n  path: demo-1.0.tar.gz\n  sha256: '{sha}'\n")
    return recipe


def test_pinned_sdist_sha256_is_checked(tmp_path: Path) -> None:
    import hashlib

    good = hashlib.sha256(b"not really an sdist, but a file with a hash").hexdigest()
    assert load_recipe(_sdist_recipe(tmp_path, good)).project.kind == "sdist"
    with pytest.raises(ConfigError) as exc:
        load_recipe(_sdist_recipe(tmp_path, "0" * 64))
    text = str(exc.value)
    assert "orch.yaml:4:" in text and "project.sha256" in text and good in text
    assert "pip download --no-binary :all: --no-deps demo==1.0" in text
    (tmp_path / "demo-1.0.tar.gz").unlink()
    with pytest.raises(ConfigError, match="does not exist; download it: pip download"):
        load_recipe(tmp_path / "orch.yaml")


@pytest.mark.docker
def test_example_verifies_in_stock_debian_with_system_python(
    x86_images: tuple[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "hello-bz2"
    shutil.copytree(EXAMPLES / "hello-bz2", project)
    recipe = project / "orch.yaml"
    # bullseye's python3 is 3.9: listing it for a cp311 wheel must fail clearly (its image is
    # made from the same debootstrap root as the manylinux_2_31 images: no new download)
    recipe.write_text(
        recipe.read_text().replace("test:\n", "test:\n  verify-images: [stock:bullseye]\n")
    )
    out = tmp_path / "wh"
    proc = orch("build", "-f", str(project), "-o", str(out), "--plain", "--only", "cp311-*")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((out / ".orch" / "report.json").read_text())
    (job,) = report["jobs"]
    verified = {v["image"]: v["status"] for v in job["verify"]}
    assert verified["stock:bullseye"] == "failed"
    log = Path(job["log"]).read_text()
    # the native uv's search (x86_64 hosts), or the interpreter script's
    assert "no CPython 3.11 in this image" in log, log
    assert not list(out.glob("*.whl"))

    # stock-images: true picks the stock image for the cp39 wheel (bullseye's python3.9,
    # glibc 2.31 >= the wheel's minimum) and verifies there in a venv
    recipe.write_text(
        recipe.read_text().replace("  verify-images: [stock:bullseye]\n", "  stock-images: true\n")
    )
    proc = orch("build", "-f", str(project), "-o", str(out), "--plain", "--only", "cp39-*")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / ".orch" / "report.json").read_text())
    (job,) = report["jobs"]
    verified = {v["image"]: v["status"] for v in job["verify"]}
    assert list(verified.values()) == ["passed", "passed"] and "stock:bullseye" in verified
    log = Path(job["log"]).read_text()
    assert (
        "system interpreter /usr/bin/python3.9: installing into a venv" in log
        or "interpreter at: /usr/bin/python3.9" in log
    ), log
    assert log.count("libbz2 1.0") == 2  # the example's test command ran in both images

    # the default (auto) uses it now that it is present; `false` never does
    recipe.write_text(recipe.read_text().replace("  stock-images: true\n", ""))
    for setting, expected in (("", ["passed", "passed"]), ("  stock-images: false\n", ["passed"])):
        recipe.write_text(recipe.read_text().replace("test:\n", "test:\n" + setting))
        proc = orch("build", "-f", str(project), "-o", str(out), "--plain", "--only", "cp39-*")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads((out / ".orch" / "report.json").read_text())
        assert [v["status"] for v in report["jobs"][0]["verify"]] == expected, setting
