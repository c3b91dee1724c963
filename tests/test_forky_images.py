"""The forky image family: Debian's own CPython 3.14 and 3.15 (no source is served here),
repaired to the newest auditwheel policy, chosen by the plan for cp314/cp315 jobs. No Docker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from orchestrator import archs
from orchestrator.errors import ConfigError
from orchestrator.images import definition, local, rootfs, stock
from orchestrator.images.sources import SourceCheck
from orchestrator.plan import catalog
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe


def test_forky_offers_debians_314_and_315_and_compiles_nothing() -> None:
    defn = definition.load_suite("forky")
    assert (defn.debian_python_tag, defn.debian_python_exe) == (
        "cp314-cp314",
        "/usr/bin/python3.14",
    )
    assert dict(defn.debian_extra) == {"cp315-cp315": "/usr/bin/python3.15"}
    assert defn.available() == ("cp314-cp314", "cp315-cp315")
    assert not defn.source_pythons
    assert {"cp314-cp314t", "cp315-cp315t"} <= set(defn.unavailable)
    # the base's venv is the first interpreter; the tools run with it
    assert definition.plan_base(defn, archs.get("x86_64")).buildargs["TOOLS_PYTHON"] == (
        "/usr/bin/python3.14"
    )


def test_a_further_debian_python_is_a_venv_in_the_job_image() -> None:
    plan = definition.plan_image("i686", "forky", ("3.15",))
    assert plan.pythons == ("cp314-cp314", "cp315-cp315")
    assert plan.derived and not plan.interpreters
    assert plan.debian_venvs == (("cp315-cp315", "/usr/bin/python3.15"),)
    assert plan.ref("build") != plan.base.ref("build")
    text = local._derived_dockerfile("BASE", "build", plan, ["cp315-cp315"])
    assert "RUN linux32 /usr/bin/python3.15 -m venv /opt/python/cp315-cp315\n" in text
    assert "ADD" not in text
    assert text.rstrip().endswith("add-pythons.sh build cp315-cp315")
    # 3.14 alone is the base itself: nothing to add
    alone = definition.plan_image("x86_64", "forky", ("3.14",))
    assert not alone.derived and alone.ref("build") == alone.base.ref("build")


def test_single_interpreter_definitions_keep_their_tags(definitions_copy: Path) -> None:
    """The generalisation changes no existing image: a one-element list is the mapping, and
    a plan without Debian venvs hashes as before (the old formula, spelled out here)."""
    before = definition.plan_image("x86_64", "bullseye", ("3.9", "3.11"))
    old = hashlib.sha256(
        json.dumps(
            {
                "format": definition.FORMAT_VERSION,
                "base": before.base.digest,
                "interpreters": [i.spec_digest for i in before.interpreters],
                "derived": definition._file_digests(["scripts/add-pythons.sh"]),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    assert before.digest == old
    path = definitions_copy / "bullseye.yaml"
    text = path.read_text()
    mapping = "debian_python:\n  tag: cp39-cp39\n  executable: /usr/bin/python3.9\n"
    assert mapping in text
    path.write_text(
        text.replace(mapping, "debian_python:\n  - {tag: cp39, executable: /usr/bin/python3.9}\n")
    )
    after = definition.plan_image("x86_64", "bullseye", ("3.9", "3.11"))
    assert (after.ref("build"), after.ref("runtime")) == (
        before.ref("build"),
        before.ref("runtime"),
    )


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (
            "  - {tag: cp315-cp315, executable: /usr/bin/python3.15}\n",
            "  - {tag: cp314-cp314, executable: /usr/bin/python3.14}\n",
            "cp314-cp314: named twice",
        ),
        (
            "debian_python:\n  - {tag: cp314-cp314, executable: /usr/bin/python3.14}\n"
            "  - {tag: cp315-cp315, executable: /usr/bin/python3.15}\n",
            "debian_python: []\n",
            "debian_python: the list is empty",
        ),
        (
            "unavailable:\n",
            "source_pythons:\n  cp315: {suite: forky, package: python3.15}\nunavailable:\n",
            "cp315-cp315: named twice",
        ),
    ],
)
def test_bad_debian_python_lists_name_the_file(
    definitions_copy: Path, old: str, new: str, match: str
) -> None:
    path = definitions_copy / "forky.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=rf"forky.yaml.*{match}"):
        definition.load_suite("forky")


def test_forky_is_repaired_to_a_policy_auditwheel_knows() -> None:
    """glibc 2.43 has no auditwheel policy: the family is repaired to manylinux_2_39, a
    policy auditwheel knows (checked here against the host's auditwheel; that the pinned
    6.4.2 of the images and the repair kit — pins checked equal here — knows it too is
    proven by the opt-in tests/test_forky_e2e.py), below the image's glibc."""
    import importlib.resources

    from orchestrator.emulation import repair_kit

    names = {
        p["name"]
        for p in json.loads(
            importlib.resources.files("auditwheel.policy")
            .joinpath("manylinux-policy.json")
            .read_text()
        )
    }
    defn = definition.load_suite("forky")
    glibc = tuple(int(x) for x in defn.glibc.split("."))
    assert defn.policy in names and defn.policy not in ("manylinux_2_42", "manylinux_2_43")
    assert tuple(int(x) for x in defn.policy.split("_")[1:]) < glibc
    assert defn.policy == local.LOCAL_POLICY_BY_SUITE["forky"][0]
    pinned = [p for p in defn.pip["tools"] if p.startswith("auditwheel==")]
    assert pinned == [t for t in repair_kit.TOOLS if t.startswith("auditwheel==")]
    assert catalog.load().local[defn.policy].suite == "forky"


def _recipe(tmp_path: Path, python: str, platforms: str, requires: str | None = None) -> Path:
    proj = tmp_path / "p"
    proj.mkdir(exist_ok=True)
    line = f'requires-python = "{requires}"\n' if requires else ""
    classifier = 'classifiers = ["Programming Language :: Python :: Free Threading :: 2 - Beta"]\n'
    (proj / "pyproject.toml").write_text(
        f'[project]\nname = "p"\nversion = "1"\n{line}{classifier}'
    )
    f = tmp_path / "orch.yaml"
    f.write_text(f"schema: 1\nproject: p\npython: {python}\nplatforms: {platforms}\n")
    return f


def _unserved_forky(suite: str, package: str) -> SourceCheck:
    """The answer this machine's mirror gives (tests/test_source_probe.py asks a real one)."""
    url = f"http://mirror.invalid/debian/pool/main/p/{package}/{package}_1-1.dsc"
    state = "unserved" if suite == "forky" else "served"
    return SourceCheck(suite, package, state, "http://mirror.invalid/debian", "1-1", url, 404)


def test_plan_builds_314_and_315_in_forky_and_says_why_not_elsewhere(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "['3.13', '3.14', '3.14t', '3.15']", "[manylinux_2_31]")
    plan = make_plan(load_recipe(recipe), host_arch="x86_64", sources=_unserved_forky)
    assert [j.id for j in plan.jobs] == ["cp313-manylinux_2_31_x86_64"]
    reasons = {e.id: e.reason for e in plan.excluded}
    why = reasons["cp314-manylinux_2_31_x86_64"]
    assert "does not serve the source of python3.14 1-1" in why and "404" in why
    assert "add manylinux_2_39 to platforms" in why
    assert "source of python3.15" in reasons["cp315-manylinux_2_31_x86_64"]
    # a mirror that serves forky's sources: compiled into the manylinux_2_31 image
    served = make_plan(load_recipe(recipe), host_arch="x86_64", sources=None)
    assert "cp314t-manylinux_2_31_x86_64" in [j.id for j in served.jobs]

    both = _recipe(
        tmp_path, "['3.13', '3.14', '3.14t', '3.15']", "[manylinux_2_31, manylinux_2_39]"
    )
    plan = make_plan(load_recipe(both), host_arch="x86_64", sources=_unserved_forky)
    jobs = {j.id: j for j in plan.jobs}
    assert sorted(jobs) == [
        "cp313-manylinux_2_31_x86_64",
        "cp314-manylinux_2_39_x86_64",
        "cp315-manylinux_2_39_x86_64",
    ]
    forky = jobs["cp315-manylinux_2_39_x86_64"]
    assert forky.image == definition.plan_image("x86_64", "forky", ("3.14", "3.15")).ref("build")
    assert forky.python_tag == "cp315-cp315" and forky.platform_tag == "manylinux_2_39_x86_64"
    reasons = {e.id: e.reason for e in plan.excluded}
    assert (
        "built in the local manylinux_2_39 image instead" in reasons["cp314-manylinux_2_31_x86_64"]
    )
    free = reasons["cp314t-manylinux_2_39_x86_64"]
    assert "Debian ships no free-threaded python3.14" in free and "404" in free


def test_requires_python_still_decides_in_forky(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "['3.14', '3.15']", "[manylinux_2_39]", requires=">=3.15")
    plan = make_plan(load_recipe(recipe), host_arch="x86_64")
    assert [j.id for j in plan.jobs] == ["cp315-manylinux_2_39_x86_64"]
    (ex,) = [e for e in plan.excluded if e.id == "cp314-manylinux_2_39_x86_64"]
    assert "requires-python >=3.15" in ex.reason


def test_forky_aarch64_jobs_are_emulated_on_x86_64(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "['3.14', '3.15']", "[manylinux_2_39]")
    text = recipe.read_text() + "archs: [x86_64, aarch64]\n"
    recipe.write_text(text)
    plan = make_plan(load_recipe(recipe), host_arch="x86_64")
    assert {(j.id, j.emulated) for j in plan.jobs} == {
        ("cp314-manylinux_2_39_x86_64", False),
        ("cp315-manylinux_2_39_x86_64", False),
        ("cp314-manylinux_2_39_aarch64", True),
        ("cp315-manylinux_2_39_aarch64", True),
    }


def test_no_forky_armv7l_jobs_and_the_plan_says_why(tmp_path: Path) -> None:
    # forky's armhf CPython has a 64-bit time_t (its pyconfig.h: SIZEOF_TIME_T 8), i386's not
    recipe = _recipe(tmp_path, "['3.14']", "[manylinux_2_39]")
    recipe.write_text(recipe.read_text() + "archs: [i686, armv7l]\n")
    plan = make_plan(load_recipe(recipe), host_arch="x86_64")
    assert [j.id for j in plan.jobs] == ["cp314-manylinux_2_39_i686"]
    [why] = [e.reason for e in plan.excluded if e.id == "cp314-manylinux_2_39_armv7l"]
    assert "64-bit time_t" in why and "no local manylinux_2_39 armv7l image" in why


def test_a_forky_free_threaded_python_names_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"cp314-cp314t: Debian ships no free-threaded"):
        definition.plan_image("x86_64", "forky", ("3.14t",))


def test_stock_forky_verifies_314_wheels() -> None:
    forky = stock.load("forky")
    assert (forky.python, forky.glibc) == ("3.14", (2, 43))
    assert stock.predict_default("3.14", "manylinux_2_39", "aarch64") == "stock:forky"
    assert stock.predict_default("3.15", "manylinux_2_39", "x86_64") is None  # none ships it


def test_rolling_suites_roots_accept_an_expired_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(rootfs, "_debootstrap_mirror", lambda: "http://mirror.invalid/debian")
    arch = archs.get("x86_64")
    forky = rootfs.mmdebstrap_command("forky", arch, Path("/r"))
    bullseye = rootfs.mmdebstrap_command("bullseye", arch, Path("/r"))
    assert forky is not None and bullseye is not None
    assert f"--aptopt={rootfs.NO_VALID_UNTIL}" in forky
    assert not any(a.startswith("--aptopt") for a in bullseye)  # its root is unchanged


def test_a_rolling_suites_root_without_mmdebstrap_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.errors import EnvironmentProblem

    monkeypatch.setattr(rootfs, "mmdebstrap_command", lambda *_a: None)  # absent, or turned off
    ran: list[list[str]] = []
    monkeypatch.setattr(rootfs, "_run", lambda cmd, _log: ran.append(cmd))
    path = tmp_path / "forky.tar"
    with pytest.raises(EnvironmentProblem, match=r"needs mmdebstrap.*apt-get install mmdebstrap"):
        rootfs._make_tarball("/usr/sbin/debootstrap", "forky", archs.get("x86_64"), path, print)
    assert not ran and not path.exists() and list(tmp_path.iterdir()) == []  # nothing left
