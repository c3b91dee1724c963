"""The imaging recipes (Pillow's libraries), their nearest sources and the Pillow example,
checked without building anything (the builds are opt-in: tests/test_recipe_library.py,
tests/test_real_projects.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.recipe.load import load_dependency_file, load_recipe
from tests.support.nearest import UNREACHABLE, nearest_sources, with_nearest
from tests.support.run import EXAMPLES, ROOT

RECIPES = ROOT / "recipes"
IMAGING = {
    "libtiff": ({"zlib", "libjpeg-turbo"}, {"tiff"}),
    "libwebp": (set(), {"webp", "webpmux", "webpdemux", "sharpyuv"}),
    "freetype": ({"zlib", "libpng"}, {"freetype"}),
    "lcms2": (set(), {"lcms2"}),
    "openjpeg": (set(), {"openjp2"}),
}
# Pillow's feature name -> the build_ext option that makes it required.
PILLOW_FEATURES = ("zlib", "jpeg", "tiff", "freetype", "lcms", "webp", "jpeg2000")


@pytest.mark.parametrize("name", sorted(IMAGING))
def test_imaging_recipe_shape(name: str) -> None:
    spec = load_dependency_file(RECIPES / f"{name}.yaml")
    requires, libs = IMAGING[name]
    assert set(spec.requires) == requires
    assert set(spec.exports.libs) == libs
    assert spec.exports.pkg_config, "dependents find it through pkg-config"
    assert re.fullmatch(r"[0-9a-f]{64}", spec.source.sha256)
    assert all(u.startswith("https://") for u in spec.source.urls)


def test_libtiff_links_no_codec_pillow_does_not_link() -> None:
    """Pillow's core module links -ltiff -ljpeg -lopenjp2 -lz: any other codec in
    libtiff.a would be an undefined symbol when the module is imported."""
    opts = set(load_dependency_file(RECIPES / "libtiff.yaml").options)
    for codec in ("webp", "zstd", "lzma", "jbig", "lerc", "libdeflate"):
        assert f"-D{codec}=OFF" in opts
    assert {"-Dzlib=ON", "-Djpeg=ON"} <= opts


def test_nearest_sources_name_recipes_and_differ_from_upstream() -> None:
    nearest = nearest_sources()
    assert set(nearest) == {"zlib", "libpng", "freetype", "openjpeg"}
    for name, near in nearest.items():
        spec = load_dependency_file(RECIPES / f"{name}.yaml")
        # a nearest source never poses as the upstream tarball
        assert near.sha256 != spec.source.sha256
        assert near.filename.startswith(near.package + "_")
    assert len({n.sha256 for n in nearest.values()}) == len(nearest)


def test_mirror_script_keeps_identical_and_nearest_sources() -> None:
    script = (ROOT / "scripts" / "mirror-from-debian.sh").read_text()
    for recipe, package in (("libtiff", "tiff"), ("libwebp", "libwebp"), ("lcms2", "lcms2")):
        assert f"[{recipe}]={package}" in script
    assert "recipes/debian-nearest.txt" in script
    # the archive's address comes from the machine's apt configuration, never the script
    assert not re.search(r"https?://[a-z0-9.-]*debian", script)


def test_nearest_override_replaces_the_library_source(tmp_path: Path) -> None:
    """The override the opt-in tests write is a plain `use:` entry orch's loader accepts,
    and it changes exactly the source (and zlib's build) of the named recipes."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    text = (
        "schema: 1\nproject: proj\ndependencies:\n"
        "  - use: zlib\n  - use: libjpeg-turbo\n  - use: libtiff\n"
    )
    nearest = nearest_sources()
    (tmp_path / "orch.yaml").write_text(with_nearest(text, {"zlib"}, nearest))
    deps = {d.name: d for d in load_recipe(tmp_path / "orch.yaml").dependencies}
    assert deps["zlib"].source.sha256 == nearest["zlib"].sha256
    assert all(u.startswith(UNREACHABLE) for u in deps["zlib"].source.urls)
    assert deps["zlib"].build_system == "script" and "win32/zlib1.rc" in deps["zlib"].script
    upstream = load_dependency_file(RECIPES / "libtiff.yaml")
    assert deps["libtiff"].source == upstream.source
    assert deps["libjpeg-turbo"].source.sha256 == (
        load_dependency_file(RECIPES / "libjpeg-turbo.yaml").source.sha256
    )


def test_pillow_example_requires_every_feature(tmp_path: Path) -> None:
    raw = yaml.safe_load((EXAMPLES / "real" / "pillow" / "orch.yaml").read_text())
    used = {d["use"] for d in raw["dependencies"]}
    assert used == {"zlib", "libjpeg-turbo", "libpng", *IMAGING}
    config = " ".join(raw["before-build"])
    assert raw["environment"]["DIST_EXTRA_CONFIG"] in config
    for feature in PILLOW_FEATURES:
        assert f"'enable_{feature} = 1'" in config, feature
    # static archives' own needs follow Pillow's -l flags on every link line
    assert "'libraries = webp sharpyuv png16 z pthread m'" in config
    assert "features.check" in raw["test"]["command"]
    # only PyInit_* leaves each extension (the audit's exported-own fix)
    assert "--version-script=/orch/pillow-exports.map" in raw["environment"]["LDFLAGS"]
    assert "{ global: PyInit_*; local: *; };" in config


def test_pillow_example_loads_with_a_directory_project(tmp_path: Path) -> None:
    """The example is a valid recipe (its sdist replaced by a directory: nothing fetched)."""
    dest = tmp_path / "pillow"
    shutil.copytree(EXAMPLES / "real" / "pillow", dest)
    (dest / "src").mkdir()
    (dest / "src" / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    text = (dest / "orch.yaml").read_text()
    text = re.sub(r"project:\n  path: \S+\n  sha256: \S+\n", "project: src\n", text)
    (dest / "orch.yaml").write_text(text)
    recipe = load_recipe(dest / "orch.yaml")
    assert [d.name for d in recipe.dependencies][:1] == ["zlib"]
    assert len(recipe.dependencies) == 8
    assert recipe.environment["DIST_EXTRA_CONFIG"] == "/orch/pillow-static.cfg"
