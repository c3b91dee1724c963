"""Stock distribution images for verification: a Debian suite with its own python3 and
nothing else (no /opt/python layout), as the users who install wheels have it.

``images/stock/<suite>.yaml`` names the suite's glibc and Python and the architectures its
mirror serves. Images start from the same debootstrap tarball as the local images and are
tagged by a hash of their definition (``orch-stock/debian-bookworm_x86_64:<hash12>``).

In recipes a stock image is named ``stock:<suite>`` (``test.verify-images``); by default each
wheel is also verified in the stock image whose Python is the wheel's and whose glibc is
the nearest at or above the wheel's minimum (`choose_default`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.errors import ConfigError
from orchestrator.images import definition, rootfs

PREFIX = "stock:"
REPOSITORY = "orch-stock"
FORMAT_VERSION = 1
Log = Callable[[str], None]


@dataclass(frozen=True)
class StockSuite:
    suite: str
    glibc: tuple[int, int]
    python: str  # "3.11": /usr/bin/python3
    archs: tuple[str, ...]
    packages: tuple[str, ...]
    path: Path

    def ref(self, arch: str) -> str:
        return f"{REPOSITORY}/debian-{self.suite}_{arch}:{self.digest(arch)[:12]}"

    def digest(self, arch: str) -> str:
        text = {
            "format": FORMAT_VERSION,
            "arch": arch,
            "dockerfile": _sha256(stock_dir() / "Dockerfile"),
            "definition": _sha256(self.path),
        }
        return hashlib.sha256(json.dumps(text, sort_keys=True).encode()).hexdigest()


def stock_dir() -> Path:
    return definition.images_dir() / "stock"


def suites() -> dict[str, StockSuite]:
    return {p.stem: load(p.stem) for p in sorted(stock_dir().glob("*.yaml"))}


def load(suite: str) -> StockSuite:
    path = stock_dir() / f"{suite}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(stock_dir().glob("*.yaml")))
        raise ConfigError(f"no stock image definition {PREFIX}{suite} (available: {known})")
    st = path.stat()
    return _parse(path, st.st_mtime_ns, st.st_size)


@functools.cache
def _parse(path: Path, _mtime: int, _size: int) -> StockSuite:
    try:
        raw = yaml.safe_load(path.read_text())
        major, minor = (int(x) for x in str(raw["glibc"]).split(".")[:2])
        return StockSuite(
            suite=str(raw["suite"]),
            glibc=(major, minor),
            python=str(raw["python"]),
            archs=tuple(map(str, raw["archs"])),
            packages=tuple(map(str, raw["packages"])),
            path=path,
        )
    except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(f"malformed stock image definition {path}: {exc!r}") from exc


def is_stock(name: str) -> bool:
    return name.startswith(PREFIX)


def stock_ref(name: str, arch: str) -> str:
    """`stock:bookworm` on x86_64 -> the local tag it is built as."""
    return load(name.removeprefix(PREFIX)).ref(arch)


def choose_default(python: str, min_glibc: tuple[int, int] | None, arch: str) -> str | None:
    """`stock:<suite>` whose python3 is `python` ("3.11") and whose glibc is the nearest
    at or above the wheel's minimum; None when no stock suite has that Python."""
    fits = [
        s
        for s in suites().values()
        if s.python == python and arch in s.archs and (min_glibc is None or s.glibc >= min_glibc)
    ]
    return f"{PREFIX}{min(fits, key=lambda s: s.glibc).suite}" if fits else None


def predict_default(python: str, policy: str, arch: str) -> str | None:
    """The stock image verification will choose for a job, before its wheel exists: the
    policy's glibc stands for the wheel's minimum, as repair tags it (a wheel auditwheel
    proves older still picks the same suite, the nearest at or above). None for
    free-threaded builds (no distribution ships one as its python3) and musllinux."""
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)", policy)
    if match is None or python.endswith("t"):
        return None
    return choose_default(python, (int(match.group(1)), int(match.group(2))), arch)


def ensure_stock_image(name: str, arch: str, on_line: Log | None = None) -> engine.ImageInfo:
    """The image for `stock:<suite>` on `arch`, built (debootstrap + apt) when absent."""
    stock = load(name.removeprefix(PREFIX))
    if arch not in stock.archs:
        raise ConfigError(
            f"{name} has no {arch} image (the suite's mirror serves: {', '.join(stock.archs)})"
        )
    ref = stock.ref(arch)
    info = engine.inspect_image(ref)
    if info is not None:
        return info
    log = on_line or (lambda _line: None)
    lock = rootfs.cache_dir() / "images" / "locks" / f"stock-{stock.suite}-{arch}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        info = engine.inspect_image(ref)  # another process may have built it meanwhile
        return info if info is not None else _build(stock, arch, log)


def _build(stock: StockSuite, arch: str, log: Log) -> engine.ImageInfo:
    the_arch = archs.get(arch)
    start = time.monotonic()
    key = definition.rootfs_key_for(stock.suite, the_arch)  # shared with the local images
    tarball = rootfs.ensure_rootfs(stock.suite, the_arch, key, log)
    with tempfile.TemporaryDirectory(prefix="orch-stock-") as tmp:
        context = Path(tmp)
        shutil.copy2(stock_dir() / "Dockerfile", context / "Dockerfile")
        try:
            os.link(tarball, context / rootfs.CONTEXT_NAME)
        except OSError:
            shutil.copy2(tarball, context / rootfs.CONTEXT_NAME)
        info = engine.build_image(
            context,
            tag=stock.ref(arch),
            platform=the_arch.platform,
            buildargs={"PACKAGES": " ".join(stock.packages), "PYTHON": stock.python},
            labels=_labels(stock, arch),
            on_line=log,
        )
    log(f"[orch] built {info.ref} in {time.monotonic() - start:.1f} s")
    return info


def _labels(stock: StockSuite, arch: str) -> dict[str, str]:
    return {
        "io.orch.image": "stock",
        "io.orch.suite": stock.suite,
        "io.orch.arch": arch,
        "io.orch.glibc": ".".join(map(str, stock.glibc)),
        "io.orch.python": stock.python,
        "io.orch.definition": stock.digest(arch),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
