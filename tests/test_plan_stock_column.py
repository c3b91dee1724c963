"""The plan's "verified in" column names the stock image verification will choose
(test.stock-images), predicted from the policy's glibc, "(if present)" in auto mode when
it is not built; none for free-threaded jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.container import engine
from orchestrator.container.types import ImageInfo
from orchestrator.images import stock
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe


@pytest.mark.parametrize(
    ("python", "policy", "arch", "expected"),
    [
        ("3.9", "manylinux_2_31", "x86_64", "stock:bullseye"),
        ("3.11", "manylinux_2_31", "x86_64", "stock:bookworm"),
        ("3.11", "manylinux_2_17", "aarch64", "stock:bookworm"),
        ("3.13", "manylinux_2_36", "s390x", "stock:trixie"),
        ("3.9", "manylinux_2_36", "x86_64", None),  # bullseye's glibc is older than the wheel's
        ("3.13t", "manylinux_2_31", "x86_64", None),  # no distribution's python3 is free-threaded
        ("3.11", "musllinux_1_2", "x86_64", None),
        ("3.9", "manylinux_2_31", "s390x", None),  # bullseye has no s390x stock image
    ],
)
def test_predict_default(python: str, policy: str, arch: str, expected: str | None) -> None:
    assert stock.predict_default(python, policy, arch) == expected


def _plan(tmp_path: Path, mode: str):  # type: ignore[no-untyped-def]
    (tmp_path / "p").mkdir(exist_ok=True)
    (tmp_path / "p" / "setup.py").write_text("")
    recipe = tmp_path / "orch.yaml"
    recipe.write_text(
        "schema: 1\nproject: p\npython: ['3.9', '3.11', '3.13t']\n"
        f"archs: [x86_64, aarch64]\ntest: {{stock-images: {mode}}}\n"
    )
    loaded = load_recipe(recipe)
    return loaded, make_plan(loaded, host_arch="x86_64")


def test_plan_column_auto_says_if_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = {stock.stock_ref("stock:bookworm", "x86_64")}

    def inspect(ref: str) -> ImageInfo | None:
        return ImageInfo(ref, "sha256:1", "amd64", "", {}, {}, ()) if ref in built else None

    monkeypatch.setattr(engine, "inspect_image", inspect)
    recipe, plan = _plan(tmp_path, "auto")
    column = cli._predicted_stock(recipe, plan)
    assert column == {
        "cp39-manylinux_2_31_x86_64": ["stock:bullseye (if present)"],
        "cp311-manylinux_2_31_x86_64": ["stock:bookworm"],
        "cp39-manylinux_2_31_aarch64": ["stock:bullseye (if present)"],
        "cp311-manylinux_2_31_aarch64": ["stock:bookworm (if present)"],
    }


def test_plan_column_always_and_never(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_engine(ref: str) -> ImageInfo | None:
        raise AssertionError("true and false never ask the engine")

    monkeypatch.setattr(engine, "inspect_image", no_engine)
    recipe, plan = _plan(tmp_path, "true")
    assert cli._predicted_stock(recipe, plan)["cp311-manylinux_2_31_aarch64"] == ["stock:bookworm"]
    recipe, plan = _plan(tmp_path, "false")
    assert cli._predicted_stock(recipe, plan) == {}
