"""Whether the package mirror serves a source-built interpreter's source decides the plan:
probed against a 127.0.0.1 mirror (a Sources index and a pool), cached, never cached when
the probe fails, never asked offline. No Docker."""

from __future__ import annotations

import gzip
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import archs, cli
from orchestrator.errors import ConfigError
from orchestrator.images import commands, definition, sources
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from tests.support.sourceserver import ServerURL, serve_directory, unused_port

T0 = 1_796_000_000.0  # late 2026
HOUR = 3600.0


def _stanza(package: str, version: str, upstream: str) -> str:
    files = [f"{package}_{version}.dsc", f"{package}_{upstream}.orig.tar.xz"]
    files.append(f"{package}_{version}.debian.tar.xz")
    sums = "".join(f" {'0' * 64} 1234 {name}\n" for name in files)
    return (
        f"Package: {package}\nBinary: {package}\nVersion: {version}\n"
        f"Checksums-Sha256:\n{sums}Directory: pool/main/p/{package}\n"
    )


def _mirror(root: Path, served: dict[str, bool], xz: bool = False, unsorted: bool = False) -> None:
    """forky's and trixie's indexes (python3.13-3.15 and neighbours); each package's pool
    files exist when `served` says so."""
    versions = {
        "python3.13": ("trixie", "3.13.5-2", "3.13.5"),
        "python3.14": ("forky", "3.14.8-1", "3.14.8"),
        "python3.15": ("forky", "3.15.0-1", "3.15.0"),
    }
    stanzas: dict[str, list[str]] = {"trixie": [], "forky": []}
    for package, (suite, version, upstream) in versions.items():
        stanzas[suite].append(_stanza(package, version, upstream))
        if served.get(package):
            pool = root / "debian" / "pool" / "main" / "p" / package
            pool.mkdir(parents=True, exist_ok=True)
            for name in (f"{version}.dsc", f"{upstream}.orig.tar.xz", f"{version}.debian.tar.xz"):
                (pool / f"{package}_{name}").write_text("x")
    # an older python3.14 listed too: apt (and the probe) take the newest
    stanzas["forky"].insert(1, _stanza("python3.14", "3.14.0~rc1-1", "3.14.0~rc1"))
    for suite, items in stanzas.items():
        items = [_stanza("aaa", "1", "1"), *items, _stanza("zzz", "1", "1")]
        if unsorted:
            items.insert(0, items.pop(items.index(_stanza("zzz", "1", "1"))))
        text = "\n".join(items).encode()
        index = root / "debian" / "dists" / suite / "main" / "source"
        index.mkdir(parents=True, exist_ok=True)
        if xz:
            (index / "Sources.xz").write_bytes(lzma.compress(text))
        else:
            (index / "Sources.gz").write_bytes(gzip.compress(text))


@pytest.fixture()
def host_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> Iterator[tuple[Path, ServerURL]]:
    """A mirror on 127.0.0.1, named by this machine's debootstrap as the real one is."""
    root = tmp_path / "mirror"
    root.mkdir()
    with serve_directory(root) as url:
        _debootstrap_names(tmp_path, monkeypatch, f"{url}/debian")
        monkeypatch.setenv("ORCH_SOURCE_PROBE", "1")
        yield root, url


def _debootstrap_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirror: str) -> None:
    script = tmp_path / "debootstrap"
    script.write_text(f'#!/bin/sh\nDEF_MIRROR="{mirror}"\nMIRRORS="$DEF_MIRROR"\n')
    monkeypatch.setattr(sources, "DEBOOTSTRAP_SCRIPT", script)


def _recipe(tmp_path: Path, python: str, platforms: str = "[manylinux_2_31]") -> Path:
    proj = tmp_path / "p"
    proj.mkdir(exist_ok=True)
    free = 'classifiers = ["Programming Language :: Python :: Free Threading :: 2 - Beta"]\n'
    (proj / "pyproject.toml").write_text(f'[project]\nname = "p"\nversion = "1"\n{free}')
    f = tmp_path / "orch.yaml"
    f.write_text(f"schema: 1\nproject: p\npython: {python}\nplatforms: {platforms}\n")
    return f


def _probes(url: ServerURL) -> list[str]:
    return [h for h in url.hits if "/debian/" in h]


def test_a_served_source_is_planned_like_cp313(
    tmp_path: Path, host_mirror: tuple[Path, ServerURL], cache_dir: Path
) -> None:
    root, url = host_mirror
    _mirror(root, {"python3.13": True, "python3.14": True, "python3.15": True})
    plan = make_plan(
        load_recipe(_recipe(tmp_path, "['3.13', '3.14', '3.14t']")),
        host_arch="x86_64",
        sources=sources.for_host(),
    )
    assert [j.id for j in plan.jobs] == [
        "cp313-manylinux_2_31_x86_64",
        "cp314-manylinux_2_31_x86_64",
        "cp314t-manylinux_2_31_x86_64",
    ]
    assert plan.jobs[1].image_pythons == ("3.13", "3.14", "3.14t")
    assert plan.jobs[2].python_tag == "cp314-cp314t" and not plan.warnings
    # one read of each suite's index (python3.15 answered along with 3.14), then HEADs
    hits = _probes(url)
    assert hits.count("/debian/dists/forky/main/source/Sources.gz") == 1
    assert hits.count("/debian/dists/trixie/main/source/Sources.gz") == 1
    assert "/debian/pool/main/p/python3.14/python3.14_3.14.8-1.dsc" in hits  # the newest
    assert not [h for h in hits if "rc1" in h]
    cached = json.loads(next(cache_dir.rglob("forky_python3.15.json")).read_text())
    assert (cached["state"], cached["version"]) == ("served", "3.15.0-1")


def test_an_unserved_source_is_excluded_with_the_mirrors_answer(
    tmp_path: Path, host_mirror: tuple[Path, ServerURL]
) -> None:
    root, url = host_mirror
    _mirror(root, {"python3.13": True})
    recipe = load_recipe(_recipe(tmp_path, "['3.13', '3.14']", "[manylinux_2_31, manylinux_2_39]"))
    plan = make_plan(recipe, host_arch="x86_64", sources=sources.for_host())
    assert sorted(j.id for j in plan.jobs) == [
        "cp313-manylinux_2_31_x86_64",
        "cp314-manylinux_2_39_x86_64",  # Debian forky's own binary: nothing to probe
    ]
    why = {e.id: e.reason for e in plan.excluded}["cp314-manylinux_2_31_x86_64"]
    asked = f"{url}/debian/pool/main/p/python3.14/python3.14_3.14.8-1.dsc"
    assert f"python3.14 3.14.8-1 (Debian forky): {asked} answered 404, checked 20" in why
    assert "re-check: orch images list --recheck" in why
    assert why.endswith("built in the local manylinux_2_39 image instead")
    # without the forky family in the recipe: the hint names it
    alone = make_plan(
        load_recipe(_recipe(tmp_path, "['3.14']")), host_arch="x86_64", sources=sources.for_host()
    )
    assert not alone.jobs
    assert "(cached); re-check" in alone.excluded[0].reason
    assert "add manylinux_2_39 to platforms" in alone.excluded[0].reason


def test_a_failed_probe_plans_the_job_says_so_and_caches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    _debootstrap_names(tmp_path, monkeypatch, f"http://127.0.0.1:{unused_port()}/debian")
    monkeypatch.setenv("ORCH_SOURCE_PROBE", "1")
    recipe = load_recipe(_recipe(tmp_path, "['3.13', '3.14']"))
    plan = make_plan(recipe, host_arch="x86_64", sources=sources.for_host())
    assert [j.id for j in plan.jobs] == [
        "cp313-manylinux_2_31_x86_64",
        "cp314-manylinux_2_31_x86_64",
    ]
    first, second = plan.warnings
    assert first.startswith("could not check whether the package mirror serves python3.13")
    assert "trixie/main/source/Sources.gz" in first
    assert "planned as the image definition lists them" in first
    # one unreachable mirror costs one timeout, not one per suite
    assert "python3.14 source (Debian forky): not asked (the mirror was unreachable" in second
    assert not list(cache_dir.rglob("*.json"))


def test_an_expired_answer_is_not_used_when_the_mirror_is_down(tmp_path: Path) -> None:
    root = tmp_path / "m"
    _mirror(root, {"python3.13": True})
    with serve_directory(root) as url:
        mirror = f"{url}/debian"
        first = sources.Prober(mirror, now=lambda: T0, cache=tmp_path / "c")
        assert first("forky", "python3.14").state == sources.UNSERVED
    # the server is gone: the day-old "not served" is not repeated as today's answer
    later = sources.Prober(mirror, now=lambda: T0 + 25 * HOUR, cache=tmp_path / "c")
    check = later("forky", "python3.14")
    assert check.state == sources.FAILED and not check.excludes
    assert "last answer (expired): not served (404), 2026-" in check.detail
    kept = json.loads(next((tmp_path / "c").rglob("forky_python3.14.json")).read_text())
    assert kept["state"] == "unserved" and kept["checked"] == T0  # untouched


def test_offline_asks_nothing(tmp_path: Path, host_mirror: tuple[Path, ServerURL]) -> None:
    root, url = host_mirror
    _mirror(root, {"python3.13": True})
    recipe = load_recipe(_recipe(tmp_path, "['3.14']"))
    unknown = make_plan(recipe, host_arch="x86_64", sources=sources.for_host(offline=True))
    assert [j.id for j in unknown.jobs] == ["cp314-manylinux_2_31_x86_64"]
    assert "offline, and no answer cached" in unknown.warnings[0]
    assert _probes(url) == []
    make_plan(recipe, host_arch="x86_64", sources=sources.for_host())  # online: cached now
    asked = len(_probes(url))
    # offline, a cached answer is used however old it is
    late = sources.Prober(sources.debootstrap_mirror(), offline=True, now=lambda: T0 * 2)
    assert late("forky", "python3.14").excludes
    offline = make_plan(recipe, host_arch="x86_64", sources=sources.for_host(offline=True))
    assert not offline.jobs and "answered 404" in offline.excluded[0].reason
    assert len(_probes(url)) == asked


def test_answers_expire_a_missing_source_sooner(
    tmp_path: Path, host_mirror: tuple[Path, ServerURL]
) -> None:
    root, url = host_mirror
    _mirror(root, {"python3.13": True}, xz=True)  # no Sources.gz: the .xz is read
    clock = [T0]
    mirror = sources.debootstrap_mirror()

    def prober() -> sources.Prober:  # a new process each time: only the disk cache is shared
        return sources.Prober(mirror, now=lambda: clock[0], cache=tmp_path / "c")

    def index_reads() -> int:
        return _probes(url).count("/debian/dists/forky/main/source/Sources.xz")

    assert prober()("forky", "python3.14").state == sources.UNSERVED
    assert prober()("trixie", "python3.13").state == sources.SERVED
    clock[0] = T0 + 23 * HOUR
    assert prober()("forky", "python3.14").cached and index_reads() == 1
    clock[0] = T0 + 25 * HOUR  # a day: "not served" is asked again, and now it is
    _mirror(root, {"python3.13": True, "python3.14": True}, xz=True)
    again = prober()("forky", "python3.14")
    assert (again.state, again.cached, index_reads()) == (sources.SERVED, False, 2)
    assert prober()("trixie", "python3.13").cached  # "served" holds for a week
    clock[0] = T0 + 8 * 24 * HOUR
    assert not prober()("trixie", "python3.13").cached
    assert prober()("forky", "python3.14").cached and index_reads() == 2  # served 167 h ago
    # --recheck asks even when the answer is fresh
    before = index_reads()
    recheck = sources.Prober(mirror, recheck=True, now=lambda: clock[0], cache=tmp_path / "c")
    assert not recheck("forky", "python3.14").cached and index_reads() == before + 1


def test_an_unsorted_index_is_read_to_the_end(tmp_path: Path) -> None:
    root = tmp_path / "m"
    _mirror(root, {"python3.14": True}, unsorted=True)
    with serve_directory(root) as url:
        found = sources.probe_suite(f"{url}/debian", "forky", ["python3.14"])
    assert found["python3.14"].state == sources.SERVED
    assert found["python3.14"].version == "3.14.8-1"


def test_cli_plan_and_images_list_show_the_answer(
    tmp_path: Path, host_mirror: tuple[Path, ServerURL], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _url = host_mirror
    _mirror(root, {"python3.13": True})
    recipe = _recipe(tmp_path, "['3.13', '3.14']")
    assert cli.main(["plan", "-f", str(recipe), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [j["id"] for j in data["jobs"]] == ["cp313-manylinux_2_31_x86_64"]
    assert "answered 404" in data["excluded"][0]["reason"]
    console = Console(record=True, width=200)
    console.print(commands.sources_table(sources.for_host()))
    text = console.export_text()
    assert "python3.14" in text and "not served (404)" in text and "(cached)" in text
    assert "manylinux_2_31:cp314t" in text


def test_build_local_refuses_an_unserved_python_before_building(
    host_mirror: tuple[Path, ServerURL],
) -> None:
    root, _url = host_mirror
    _mirror(root, {"python3.13": True})
    with pytest.raises(ConfigError, match=r"--python 3\.14t \(bullseye\): the package mirror"):
        commands._check_sources("x86_64", "bullseye", ("3.14t",), Console())
    commands._check_sources("x86_64", "bullseye", ("3.13",), Console())  # served: no error


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("3.14.8-1", "3.14.0~rc1-1", 1),
        ("3.13.5-2+deb13u5", "3.13.5-2", 1),
        ("3.13.5-2", "3.13.15-1", -1),
        ("1:1.0", "2.0", 1),
        ("1.0~b1", "1.0", -1),
        ("1.0-1", "1.0-1", 0),
    ],
)
def test_versions_compare_as_dpkg_does(a: str, b: str, sign: int) -> None:
    got = sources.compare_versions(a, b)
    assert (got > 0) - (got < 0) == sign


def test_listing_more_source_pythons_moves_no_image_tag(definitions_copy: Path) -> None:
    """The forky entries are new lines in bullseye.yaml: every image named without them
    (base, builder, job images of the other Pythons) keeps its tag."""
    combos = [None, ("3.9",), ("3.11",), ("3.13", "3.13t"), ("3.11", "3.13")]

    def refs() -> list[str]:
        out = []
        for arch in ("x86_64", "aarch64"):
            defn = definition.load_suite("bullseye")
            out.append(definition.plan_builder(defn, archs.get(arch)).ref)
            out += [definition.plan_image(arch, "bullseye", c).ref("build") for c in combos]
        return out

    with_forky = refs()
    path = definitions_copy / "bullseye.yaml"
    kept = [ln for ln in path.read_text().splitlines(keepends=True) if "suite: forky" not in ln]
    path.write_text("".join(kept))
    assert "cp314-cp314" not in definition.load_suite("bullseye").source_pythons
    assert refs() == with_forky


class _CutIndex:
    """A 127.0.0.1 server whose Sources index stops short: half the compressed body, with
    the full Content-Length (the connection drops) or with none (it just ends)."""

    def __init__(self, body: bytes, length: bool) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/debian"
        self.body, self.length = body, length
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                head = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                if self.length:
                    head += f"Content-Length: {len(self.body)}\r\n"
                conn.sendall((head + "\r\n").encode() + self.body[: len(self.body) // 2])


@pytest.mark.parametrize("length", [True, False], ids=["dropped", "ended-early"])
def test_an_index_cut_short_fails_the_probe_and_is_not_cached(tmp_path: Path, length: bool) -> None:
    """Neither a dropped connection (urllib3's error, below requests) nor a body that just
    ends is "the index lists no python3.14": both fail the probe, and nothing is cached."""
    text = "\n".join(_stanza(f"pkg{i:04d}", "1", "1") for i in range(2000)).encode()
    server = _CutIndex(
        gzip.compress(text + b"\n" + _stanza("python3.14", "3.14.8-1", "3.14.8").encode()), length
    )
    try:
        check = sources.Prober(server.url, now=lambda: T0, cache=tmp_path / "c")(
            "forky", "python3.14"
        )
    finally:
        server.sock.close()
    assert check.state == sources.FAILED and not check.excludes, check
    assert not list((tmp_path / "c").rglob("*.json"))


def test_a_corrupt_xz_index_fails_the_probe(tmp_path: Path) -> None:
    root = tmp_path / "m"
    index = root / "debian" / "dists" / "forky" / "main" / "source"
    index.mkdir(parents=True)
    (index / "Sources.xz").write_bytes(lzma.compress(b"Package: x\n")[:12] + b"garbage" * 50)
    with serve_directory(root) as url:
        found = sources.probe_suite(f"{url}/debian", "forky", ["python3.14"])
    assert found["python3.14"].state == sources.FAILED


def test_shards_are_cut_alike_whatever_each_runners_probe_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`orch matrix` asks no mirror; each `orch build --shard K/N` cuts the same unprobed
    plan, then drops what its own mirror does not serve: a runner whose probe failed and
    one that got a 404 build the same shard, less the unserved jobs (cut from each one's
    probed plan, shards 1 and 3 of 4 would differ here: a job built twice, one never)."""
    import argparse

    recipe = tmp_path / "orch.yaml"
    _recipe(tmp_path, "['3.13', '3.14']", "[manylinux_2_31, manylinux_2_39]")
    recipe.write_text(recipe.read_text() + "archs: [x86_64, i686, aarch64]\n")

    def runner(state: str) -> Any:
        def check(suite: str, package: str) -> sources.SourceCheck:
            got = state if package == "python3.14" else sources.SERVED
            return sources.SourceCheck(suite, package, got, "m", "1", "u", 404, T0, "down")

        return lambda offline=False, recheck=False: check

    def jobs(state: str, k: int) -> set[str]:
        monkeypatch.setattr(sources, "for_host", runner(state))
        args = argparse.Namespace(
            file=str(recipe), arch=[], only=[], shard=(k, 4), runner=[], allow_empty=True
        )
        return {j.id for j in cli._load_plan(args)[1].jobs}

    matrix = argparse.Namespace(file=str(recipe), arch=[], only=[], runner=[], allow_empty=True)
    full = {j.id for j in cli._load_plan(matrix, probe=False)[1].jobs}
    failed = [jobs(sources.FAILED, k) for k in (1, 2, 3, 4)]
    unserved = [jobs(sources.UNSERVED, k) for k in (1, 2, 3, 4)]
    assert set().union(*failed) == full and sum(map(len, failed)) == len(full)
    gone = {f"cp314-manylinux_2_31_{a}" for a in ("x86_64", "i686", "aarch64")}
    assert gone <= full
    assert unserved == [f - gone for f in failed]
