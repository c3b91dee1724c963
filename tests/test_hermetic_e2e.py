"""Hermetic dependency builds on the real engine: sources are fetched and verified on the
host, and a dependency's build container has no network (only `lo`; a pip download from
the configured index fails) unless its recipe says `network: true` — which changes its
key, so the online artifact never stands in for the offline one."""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.conftest import containers_with_label
from tests.support.depworld import build, dep_yaml
from tests.support.run import orch

pytestmark = pytest.mark.docker

PROBE = """\
mkdir -p "$PREFIX/share/netprobe"
ls /sys/class/net | sort | tr '\\n' ' ' > "$PREFIX/share/netprobe/interfaces"
if timeout 90 /opt/python/cp39-cp39/bin/python -m pip download --no-deps --retries 0 \\
    --timeout 15 -d /tmp/dl six > /tmp/pip.log 2>&1; then r=reachable; else r=unreachable; fi
echo "$r" > "$PREFIX/share/netprobe/index"
tail -2 /tmp/pip.log
make PREFIX="$PREFIX" install
"""


def _probe_dep(url: str, sha: str, network: bool) -> str:
    body = textwrap.indent(PROBE, "        ")
    return textwrap.indent(
        f"- name: orchc\n"
        f'  version: "1.0"\n'
        f'  source: {{url: "{url}", sha256: "{sha}"}}\n'
        f"  build:\n    system: script\n    script: |\n{body}"
        f"  exports: {{libs: [orchc]}}\n"
        f"  network: {'true' if network else 'false'}\n",
        "  ",
    )


def _recipe(tmp_path: Path, base: str, tarballs: dict[str, tuple[Path, str]], net: bool) -> Path:
    url = {n: f"{base}/{t[0].name}" for n, t in tarballs.items()}
    recipe = tmp_path / "orch.yaml"
    recipe.write_text(
        'schema: 1\nproject: proj\npython: ["3.9"]\n'
        'test:\n  command: python -c "import depuser; assert depuser.total() == 142"\n'
        "dependencies:\n"
        + dep_yaml("orcha", url["orcha"], tarballs["orcha"][1], [])
        + dep_yaml("orchb", url["orchb"], tarballs["orchb"][1], ["orcha"])
        + _probe_dep(url["orchc"], tarballs["orchc"][1], net)
    )
    return recipe


def _probe(wheelhouse: Path, cache_dir: Path) -> tuple[str, str, str, str]:
    report = json.loads((wheelhouse / ".orch" / "report.json").read_text())
    dep = next(d for d in report["deps"] if d["name"] == "orchc")
    key = dep["key"]
    with tarfile.open(cache_dir / "deps" / key[:2] / key / "artifact.tar.gz") as tar:
        files = {m: tar.extractfile(f"share/netprobe/{m}") for m in ("interfaces", "index")}
        text = {m: f.read().decode().strip() if f else "" for m, f in files.items()}
    return dep["status"], key, text["interfaces"], text["index"]


def test_dependency_builds_are_offline_unless_the_recipe_opts_in(
    x86_images: tuple[str, str], world, cache_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    offline = _recipe(tmp_path, base, tarballs, net=False)
    run = build(offline, tmp_path / "wh1", "--no-verify", "--no-audit")
    assert run.returncode == 0, run.stdout + run.stderr
    status, key_off, interfaces, index = _probe(tmp_path / "wh1", cache_dir)
    assert (status, interfaces, index) == ("built", "lo", "unreachable")

    online = _recipe(tmp_path, base, tarballs, net=True)
    plan = orch("plan", "-f", str(online))
    assert "orchc (network)" in plan.stdout, plan.stdout + plan.stderr
    run = build(online, tmp_path / "wh2", "--no-verify", "--no-audit")
    assert run.returncode == 0, run.stdout + run.stderr
    status, key_on, interfaces, index = _probe(tmp_path / "wh2", cache_dir)
    assert status == "built" and key_on != key_off  # not the offline artifact
    assert "lo" in interfaces.split() and len(interfaces.split()) > 1
    assert index == "reachable"
    report = json.loads((tmp_path / "wh2" / ".orch" / "report.json").read_text())
    assert {d["name"]: d["status"] for d in report["deps"]} == {
        "orcha": "cached",
        "orchb": "cached",
        "orchc": "built",
    }
    # (other runs share this engine: only this run's containers count)
    assert containers_with_label(f"io.orch.run={report['run_id']}") == []


HOSTILE = """\
make PREFIX="$PREFIX" install
ln -s /etc "$PREFIX/lib/evil"
"""


def test_a_locally_built_artifact_with_an_escaping_link_is_refused(
    x86_images: tuple[str, str], world, cache_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    tmp_path, base, tarballs, _ = world
    recipe = _recipe(tmp_path, base, tarballs, net=False)
    text = recipe.read_text().replace(
        textwrap.indent(PROBE, "          "), textwrap.indent(HOSTILE, "          ")
    )
    assert "ln -s /etc" in text
    recipe.write_text(text)
    run = build(recipe, tmp_path / "wh", "--no-verify", "--no-audit")
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads((tmp_path / "wh" / ".orch" / "report.json").read_text())
    orchc = next(d for d in report["deps"] if d["name"] == "orchc")
    assert orchc["status"] == "failed" and "escapes (absolute)" in orchc["error"]
    assert not (cache_dir / "deps" / orchc["key"][:2] / orchc["key"]).exists()
    assert list((tmp_path / "wh").glob("*.whl")) == []
    assert "Traceback" not in run.stderr
    assert containers_with_label(f"io.orch.run={report['run_id']}") == []


def test_copy_out_is_bounded(x86_images: tuple[str, str], tmp_path: Path) -> None:
    from orchestrator.container import engine
    from orchestrator.errors import OrchError

    labels = {engine.LABEL_JOB: "copyout"}
    container = engine.create_container(x86_images[0], labels=labels, network_mode="none")
    try:
        code = engine.exec_stream(
            container, ["sh", "-c", "head -c 3000000 /dev/zero > /big"], lambda _b: None
        ).exit_code
        assert code == 0
        dest = tmp_path / "out.tar"
        with pytest.raises(OrchError, match=r"larger than 1 MiB.*ORCH_MAX_COPYOUT_MB"):
            engine.copy_out(container, "/big", dest, 1 << 20)
        assert not dest.exists()
        engine.copy_out(container, "/big", dest, 4 << 20)
        with tarfile.open(dest) as tar:
            assert tar.getmember("big").size == 3_000_000
    finally:
        engine.remove_container(container)
