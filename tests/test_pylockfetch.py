"""pylockfetch, the emulated verification fill's downloader, run as the container runs it
(`python pylockfetch.py PYLOCK DEST`) against wheels served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.pipeline.verify import FETCH_SCRIPT, pylock_fill_script

WHEEL = b"PK\x05\x06" + b"\0" * 18  # an empty zip: the bytes only have to match their hash


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "demo-1.0-py3-none-any.whl").write_bytes(WHEEL)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *_a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run(tmp_path: Path, pylock: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    (tmp_path / "pylock.toml").write_text(pylock)
    dest = tmp_path / "wheels"
    dest.mkdir(exist_ok=True)
    cmd = [sys.executable, str(FETCH_SCRIPT), str(tmp_path / "pylock.toml"), str(dest)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60), dest


def _pkg(name: str, body: str) -> str:
    return f'[[packages]]\nname = "{name}"\nversion = "1.0"\n{body}\n'


def test_fetches_pinned_wheels_skips_own_and_leaves_sdists_to_pip(
    served: str, tmp_path: Path
) -> None:
    digest = hashlib.sha256(WHEEL).hexdigest()
    url = f"{served}/demo-1.0-py3-none-any.whl"
    pylock = (
        _pkg("demo", f'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{digest}" }} }}]')
        + _pkg("own", 'archive = { path = "/orch/verify/own-1.0-cp313-cp313-linux.whl" }')
        + _pkg("built", f'sdist = {{ url = "{served}/built-1.0.tar.gz" }}')
    )
    proc, dest = _run(tmp_path, pylock)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in dest.iterdir()] == ["demo-1.0-py3-none-any.whl"]
    assert (dest / "demo-1.0-py3-none-any.whl").read_bytes() == WHEEL
    assert proc.stdout.split() == ["built==1.0"]  # pip builds it, pinned


def test_wrong_hash_fails_and_leaves_no_file(served: str, tmp_path: Path) -> None:
    url = f"{served}/demo-1.0-py3-none-any.whl"
    pylock = _pkg("demo", f'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{"0" * 64}" }} }}]')
    proc, dest = _run(tmp_path, pylock)
    assert proc.returncode != 0
    assert "sha256 mismatch for demo-1.0-py3-none-any.whl" in proc.stderr
    assert list(dest.iterdir()) == []


def test_a_requirement_not_from_an_index_hands_everything_to_pip(
    served: str, tmp_path: Path
) -> None:
    digest = hashlib.sha256(WHEEL).hexdigest()
    url = f"{served}/demo-1.0-py3-none-any.whl"
    pylock = _pkg(
        "demo", f'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{digest}" }} }}]'
    ) + _pkg("src", 'directory = { path = "/src" }')
    proc, dest = _run(tmp_path, pylock)
    assert proc.returncode == 4
    assert list(dest.iterdir()) == []  # nothing fetched before the decision


def test_fill_script_is_valid_bash_and_keeps_the_fallback() -> None:
    script = pylock_fill_script("/orch/native/uv-1/uv", "python -m pip wheel x")
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert "--python /orch/venv/bin/python" in script  # the target interpreter's markers
    assert script.count("fallback ") == 3  # uv fails, no tomllib, not from an index
