"""The source fetcher: locations, verification and the content-addressed store."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.deps.fetch import FetchError, fetch_source, locations
from orchestrator.errors import ConfigError
from orchestrator.recipe.model import SourceSpec
from tests.support.sourceserver import make_tarball, serve_directory, unused_port

FILES = {"configure": "#!/bin/sh\necho configured\n", "src/zlib.c": "int z;\n"}


@pytest.fixture
def tarball(tmp_path: Path) -> tuple[Path, str]:
    return make_tarball(tmp_path / "served", "zlib-1.3.1", FILES)


def spec(urls: list[str], sha: str, filename: str = "zlib-1.3.1.tar.gz") -> SourceSpec:
    return SourceSpec(urls=tuple(urls), sha256=sha, filename=filename)


def leftovers(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.name.startswith(".part-")]


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def test_make_tarball_is_deterministic(tmp_path: Path) -> None:
    _, a = make_tarball(tmp_path / "a", "x-1", FILES)
    _, b = make_tarball(tmp_path / "b", "x-1", FILES)
    assert a == b


def test_download_then_store_hit(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    store = tmp_path / "store"
    with serve_directory(path.parent) as url:
        src = spec([f"{url}/{path.name}"], sha)
        got = fetch_source(src, mirrors=(), store=store, log=Log())
        again = fetch_source(src, mirrors=(), store=store, log=Log())
        assert url.hits == [f"/{path.name}"]  # the second call never touched the network
    assert got == again == store / sha / path.name
    assert got.read_bytes() == path.read_bytes()


def test_dead_and_missing_urls_then_a_working_one(
    tmp_path: Path, tarball: tuple[Path, str]
) -> None:
    path, sha = tarball
    dead = f"http://127.0.0.1:{unused_port()}/{path.name}"
    with serve_directory(path.parent) as url:
        src = spec([dead, f"{url}/nope.tar.gz", f"{url}/{path.name}"], sha)
        log = Log()
        got = fetch_source(src, mirrors=(), store=tmp_path / "store", log=log)
        assert url.hits == ["/nope.tar.gz", f"/{path.name}"]
    assert got.is_file()
    assert any("refused" in line.lower() for line in log)
    assert any("404" in line for line in log)


def test_every_location_failing_lists_each(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    dead = f"http://127.0.0.1:{unused_port()}/{path.name}"
    store = tmp_path / "store"
    with serve_directory(path.parent) as url:
        missing = f"{url}/missing.tar.gz"
        with pytest.raises(FetchError) as exc:
            fetch_source(spec([dead, missing], sha), mirrors=(), store=store, log=Log())
    msg = str(exc.value)
    assert dead in msg and "refused" in msg.lower()
    assert missing in msg and "HTTP 404" in msg
    assert not (store / sha).exists()


def test_checksum_mismatch_keeps_nothing(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    wrong = "0" * 64
    store = tmp_path / "store"
    with serve_directory(path.parent) as url:
        src_url = f"{url}/{path.name}"
        with pytest.raises(FetchError) as exc:
            fetch_source(spec([src_url], wrong), mirrors=(), store=store, log=Log())
    msg = str(exc.value)
    assert src_url in msg and wrong in msg and sha in msg and "mismatch" in msg
    assert not (store / wrong).exists()
    assert leftovers(store) == []


def test_mismatching_first_url_falls_through_to_a_good_one(
    tmp_path: Path, tarball: tuple[Path, str]
) -> None:
    path, sha = tarball
    bad, _ = make_tarball(tmp_path / "served" / "evil", "zlib-1.3.1", {"x": "tampered\n"})
    with serve_directory(path.parent) as url:
        src = spec([f"{url}/evil/{bad.name}", f"{url}/{path.name}"], sha)
        got = fetch_source(src, mirrors=(), store=tmp_path / "store", log=Log())
    assert got.read_bytes() == path.read_bytes()
    assert leftovers(tmp_path / "store") == []


def test_corrupt_store_entry_is_refetched(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    store = tmp_path / "store"
    with serve_directory(path.parent) as url:
        src = spec([f"{url}/{path.name}"], sha)
        got = fetch_source(src, mirrors=(), store=store, log=Log())
        got.write_bytes(b"bit rot")
        log = Log()
        again = fetch_source(src, mirrors=(), store=store, log=log)
        assert len(url.hits) == 2
    assert again.read_bytes() == path.read_bytes()
    assert any("corrupt" in line for line in log)


def test_file_url_and_plain_path(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    got = fetch_source(spec([path.as_uri()], sha), mirrors=(), store=tmp_path / "s1", log=Log())
    assert got.read_bytes() == path.read_bytes()
    got = fetch_source(spec([str(path)], sha), mirrors=(), store=tmp_path / "s2", log=Log())
    assert got.read_bytes() == path.read_bytes()


# --- mirrors ------------------------------------------------------------------------

UPSTREAM = "https://zlib.example.invalid/fossils/zlib-1.3.1.tar.gz"


def _also_served_as(tarball: Path, rel: str) -> None:
    """A copy of the served tarball at another path of the same server."""
    dest = tarball.parent / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(tarball.read_bytes())


def test_mirror_template_is_tried_before_the_recipe(
    tmp_path: Path, tarball: tuple[Path, str]
) -> None:
    path, sha = tarball
    _also_served_as(path, f"by-hash/{sha}")
    with serve_directory(path.parent) as url:
        mirrors = [{"template": f"{url}/by-hash/{{sha256}}"}]
        got = fetch_source(spec([UPSTREAM], sha), mirrors=mirrors, store=tmp_path / "s", log=Log())
        assert url.hits == [f"/by-hash/{sha}"]
    assert got.read_bytes() == path.read_bytes()


def test_mirror_template_name_placeholder(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    _also_served_as(path, f"zlib/{path.name}")
    with serve_directory(path.parent) as url:
        mirrors = [{"template": f"{url}/{{name}}/{{filename}}"}]
        src = spec([UPSTREAM], sha)
        fetch_source(src, mirrors=mirrors, store=tmp_path / "s", log=Log(), name="zlib")
        assert url.hits == [f"/zlib/{path.name}"]
    # Without a name the template is skipped, not filled with garbage.
    assert [loc.url for loc in locations(src, mirrors)] == [UPSTREAM]


def test_mirror_directory_layouts(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    for i, rel in enumerate([sha, path.name, f"{sha}/{path.name}"]):
        mirror_dir = tmp_path / f"mirror{i}"
        (mirror_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror_dir / rel).write_bytes(path.read_bytes())
        got = fetch_source(
            spec([UPSTREAM], sha),
            mirrors=[{"directory": str(mirror_dir)}],
            store=tmp_path / f"store{i}",
            log=Log(),
        )
        assert got.read_bytes() == path.read_bytes()


def test_mirror_prefix_rewrite(tmp_path: Path, tarball: tuple[Path, str]) -> None:
    path, sha = tarball
    _also_served_as(path, f"zlib/{path.name}")
    with serve_directory(path.parent) as url:
        mirrors = [{"prefix": "https://zlib.example.invalid/fossils/", "to": f"{url}/zlib/"}]
        fetch_source(spec([UPSTREAM], sha), mirrors=mirrors, store=tmp_path / "s", log=Log())
        assert url.hits == [f"/zlib/{path.name}"]


def test_mirror_order_does_not_matter_for_the_result(tmp_path: Path) -> None:
    src = spec(["http://a/x.tar.gz", "http://b/x.tar.gz"], "a" * 64, "x.tar.gz")
    m1 = {"template": "http://m1/{sha256}"}
    m2 = {"prefix": "http://b/", "to": "http://m2/"}
    assert [loc.url for loc in locations(src, [m1, m2])] == [
        f"http://m1/{'a' * 64}",
        "http://m2/x.tar.gz",
        "http://a/x.tar.gz",
        "http://b/x.tar.gz",
    ]


@pytest.mark.parametrize(
    "mirror",
    [{"template": "http://m/{bogus}"}, {"prefix": "http://a/"}, {"weird": "x"}],
)
def test_bad_mirror_is_a_config_error(tmp_path: Path, mirror: dict[str, str]) -> None:
    src = spec(["http://a/x.tar.gz"], "a" * 64, "x.tar.gz")
    with pytest.raises(ConfigError):
        fetch_source(src, mirrors=[mirror], store=tmp_path, log=Log())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("filename", ["../x.tar.gz", "a/b.tar.gz", ".hidden", ""])
def test_unsafe_filename_is_refused(tmp_path: Path, filename: str) -> None:
    with pytest.raises(ConfigError):
        fetch_source(
            spec(["http://a/x"], "a" * 64, filename), mirrors=(), store=tmp_path, log=Log()
        )
