"""The imaging recipes (Pillow's libraries), their stand-ins and the Pillow example,
checked without building anything (the builds are opt-in: tests/test_recipe_library.py,
tests/test_real_projects.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.recipe.load import load_dependency_file, load_recipe
from orchestrator.util.hashing import sha256_file
from tests.support.run import EXAMPLES, ROOT
from tests.support.standins import (
    LIST,
    UNREACHABLE,
    needing_stand_ins,
    stand_ins,
    use_entry,
    with_stand_ins,
)

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


def test_stand_ins_name_recipes_and_differ_from_upstream() -> None:
    found = stand_ins()
    assert {"zlib", "libpng", "freetype", "openjpeg"} <= set(found)
    for name, stand_in in found.items():
        spec = load_dependency_file(RECIPES / f"{name}.yaml")
        # a stand-in never poses as the upstream tarball
        assert stand_in.sha256 != spec.source.sha256
        assert stand_in.filename.startswith(stand_in.package + "_")
        assert stand_in.suite in ("bookworm", "trixie", "forky"), name
        assert all(p.is_file() for p in stand_in.patches), name
    assert len({s.sha256 for s in found.values()}) == len(found)
    # libpng's stand-in is an older release: the override must say so
    assert found["libpng"].version == "1.6.48"
    assert load_dependency_file(RECIPES / "libpng.yaml").version != "1.6.48"


def test_mirror_script_keeps_identical_sources_and_stand_ins() -> None:
    script = (ROOT / "scripts" / "mirror-from-debian.sh").read_text()
    for recipe, package in (("libtiff", "tiff"), ("libwebp", "libwebp"), ("lcms2", "lcms2")):
        assert f"[{recipe}]={package}" in script
    # one list of stand-ins, read by one loop
    assert re.findall(r'done < "\$here/recipes/(\S+)"', script) == ["stand-ins.tsv"]
    assert "debian-nearest" not in script
    assert not (RECIPES / "debian-nearest.txt").exists()
    # the archive's address comes from the machine's apt configuration, never the script
    assert not re.search(r"https?://[a-z0-9.-]*debian", script)


def test_stand_in_override_replaces_the_library_source(tmp_path: Path) -> None:
    """The override the opt-in tests write is a plain `use:` entry orch's loader accepts,
    and it changes exactly the version and source (zlib's with its patch) of the named
    recipes; the recipe's own build system is kept."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    text = (
        "schema: 1\nproject: proj\ndependencies:\n"
        "  - use: zlib\n  - use: libpng\n  - use: libjpeg-turbo\n  - use: libtiff\n"
    )
    found = stand_ins()
    (tmp_path / "orch.yaml").write_text(with_stand_ins(text, {"zlib", "libpng"}))
    deps = {d.name: d for d in load_recipe(tmp_path / "orch.yaml").dependencies}
    for name in ("zlib", "libpng"):
        upstream = load_dependency_file(RECIPES / f"{name}.yaml")
        assert deps[name].source == found[name].source
        assert all(u.startswith(UNREACHABLE) for u in deps[name].source.urls)
        assert deps[name].version == found[name].version
        assert deps[name].build_system == upstream.build_system == "cmake"
        assert deps[name].options == upstream.options
    assert deps["libpng"].version == "1.6.48" and not deps["libpng"].source.patches
    # zlib's CMakeLists names win32/zlib1.rc, which Debian's +dfsg repack drops
    (patch,) = deps["zlib"].source.patches
    assert patch.name == "zlib-dfsg-win32-rc.patch"
    assert "+++ b/win32/zlib1.rc" in patch.read_text()
    for name in ("libtiff", "libjpeg-turbo"):
        assert deps[name].source == load_dependency_file(RECIPES / f"{name}.yaml").source


def test_a_stand_in_is_used_only_when_the_mirror_lacks_upstream(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "zlib_x.orig.tar.gz").write_bytes(b"a repacked zlib")
    listed = tmp_path / "stand-ins.tsv"
    sha = sha256_file(mirror / "zlib_x.orig.tar.gz")
    listed.write_text(f"# comment\nzlib\tzlib/trixie\t1.3.1\t{sha}\tzlib_x.orig.tar.gz\n")
    deps = [load_dependency_file(RECIPES / f"{n}.yaml") for n in ("zlib", "libpng")]
    # libpng has no stand-in in this list and zlib's upstream tarball is absent
    assert needing_stand_ins(mirror, deps, listed) == {"zlib"}
    (mirror / "zlib_x.orig.tar.gz").write_bytes(b"changed")  # wrong bytes: not a stand-in
    assert needing_stand_ins(mirror, deps, listed) == set()


def test_use_entry_without_stand_in_is_the_plain_use() -> None:
    assert use_entry("zlib") == "  - use: zlib\n"
    assert use_entry("zlib", indent="") == "- use: zlib\n"
    with pytest.raises(AssertionError, match="does not use zlib"):
        with_stand_ins("  - use: libpng\n", {"zlib"})


def test_stand_in_list_rejects_a_malformed_row(tmp_path: Path) -> None:
    bad = tmp_path / "stand-ins.tsv"
    bad.write_text(LIST.read_text() + "zlib\tzlib\t1.3.1\tnot-a-sha\tz.tar.gz\n")
    with pytest.raises(AssertionError):
        stand_ins(bad)


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
