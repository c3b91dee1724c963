"""How long planning takes for a pyarrow-sized recipe (no engine needed).

    python benchmarks/plan_scale.py [--reps 20]

Writes a recipe into a temporary directory: a fake project, 34 static dependencies in a
DAG with pyarrow-like fan-in (compression libraries, TLS, curl, protobuf/gRPC, the AWS and
Google Cloud SDKs), 6 Python versions x 3 policies x 6 architectures. manylinux2014 and
manylinux_2_28 name an explicit (multi-arch) image in `images:` so that armv7l, which
the pypa images lack, gets jobs too; musllinux_1_2 uses pypa's images.

Then times, over --reps repetitions: loading the recipe, `make_plan`, `Plan.shards(n)` and
`github_matrix(plan, n)` for n in 1, 4, 16, 64, and prints median and min. A second plan
over locally built images (manylinux_2_31) times the local image tag computation, and the
engine client is watched: planning must not talk to Docker.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.container import engine
from orchestrator.plan.github import github_matrix
from orchestrator.plan.jobs import Plan, make_plan
from orchestrator.recipe import load_recipe

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]
ARCHS = ["x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l"]
SHARDS = (1, 4, 16, 64)

# name -> (build system, requires): roughly pyarrow's bundled dependencies.
DEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "zlib": ("cmake", ()),
    "bzip2": ("make", ()),
    "xz": ("autotools", ()),
    "lz4": ("make", ()),
    "zstd": ("cmake", ()),
    "snappy": ("cmake", ()),
    "brotli": ("cmake", ()),
    "openssl": ("script", ("zlib",)),
    "c-ares": ("cmake", ()),
    "nghttp2": ("cmake", ("openssl", "zlib")),
    "curl": ("cmake", ("openssl", "zlib", "c-ares", "nghttp2", "zstd", "brotli")),
    "abseil": ("cmake", ()),
    "protobuf": ("cmake", ("abseil", "zlib")),
    "re2": ("cmake", ("abseil",)),
    "grpc": ("cmake", ("abseil", "protobuf", "re2", "c-ares", "openssl", "zlib")),
    "utf8proc": ("cmake", ()),
    "boost": ("script", ("zlib", "bzip2", "xz", "zstd")),
    "libevent": ("cmake", ("openssl",)),
    "thrift": ("cmake", ("boost", "openssl", "zlib", "libevent")),
    "gflags": ("cmake", ()),
    "glog": ("cmake", ("gflags",)),
    "rapidjson": ("cmake", ()),
    "xsimd": ("cmake", ()),
    "jemalloc": ("autotools", ()),
    "mimalloc": ("cmake", ()),
    "crc32c": ("cmake", ()),
    "nlohmann_json": ("cmake", ()),
    "orc": ("cmake", ("protobuf", "zstd", "lz4", "snappy", "zlib")),
    "s2n-tls": ("cmake", ("openssl",)),
    "aws-c-common": ("cmake", ()),
    "aws-c-io": ("cmake", ("aws-c-common", "s2n-tls", "openssl")),
    "aws-c-http": ("cmake", ("aws-c-io", "aws-c-common")),
    "aws-sdk-cpp": ("cmake", ("aws-c-http", "aws-c-io", "aws-c-common", "curl", "openssl", "zlib")),
    "google-cloud-cpp": (
        "cmake",
        ("abseil", "grpc", "protobuf", "curl", "crc32c", "nlohmann_json", "openssl"),
    ),
}


def _dependency(name: str, system: str, requires: tuple[str, ...]) -> dict[str, Any]:
    dep: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "source": {
            "url": [f"https://downloads.example.invalid/{name}/{name}-1.0.0.tar.gz"],
            "sha256": f"{abs(hash(name)) % (1 << 64):016x}" * 4,
        },
        "build": {"system": system},
        "exports": {"libs": [name.replace("-", "_")]},
    }
    if system == "script":
        dep["build"]["script"] = 'make -C "$SRC_DIR" -j "$JOBS" install PREFIX="$PREFIX"'
    if requires:
        dep["requires"] = list(requires)
    return dep


def write_recipe(root: Path, platforms: list[str], images: dict[str, str]) -> Path:
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "bigarrow"\nversion = "1.0"\n'
    )
    recipe = {
        "schema": 1,
        "name": "bigarrow",
        "project": "project",
        "python": PYTHONS,
        "platforms": platforms,
        "archs": ARCHS,
        "images": images,
        "dependencies": [_dependency(n, s, r) for n, (s, r) in DEPS.items()],
    }
    path = root / f"orch-{'-'.join(platforms)}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def row(label: str, times: list[float], note: str = "") -> str:
    med, low = statistics.median(times) * 1000, min(times) * 1000
    return f"{label:<34} {med:>10.3f} {low:>10.3f}  {note}"


def watch_engine() -> list[str]:
    """Record any attempt to reach the engine while planning."""
    calls: list[str] = []
    original = engine.client

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append("engine.client()")
        return original(*args, **kwargs)

    engine.client = spy
    return calls


def bench(recipe_file: Path, reps: int, title: str) -> None:
    print(f"\n== {title} ==")
    print(f"{'stage':<34} {'median ms':>10} {'min ms':>10}")
    cold, _ = timed(lambda: load_recipe(recipe_file), 1)
    print(row("load recipe (first, cold caches)", cold))
    times, recipe = timed(lambda: load_recipe(recipe_file), reps)
    print(row("load recipe", times, f"{len(recipe.dependencies)} dependencies"))
    times, plan = timed(lambda: make_plan(recipe, host_arch="x86_64"), reps)
    assert isinstance(plan, Plan)
    note = f"{len(plan.jobs)} jobs, {len(plan.groups())} groups, {len(plan.excluded)} excluded"
    print(row("make_plan", times, note))
    for n in SHARDS:
        times, shards = timed(functools.partial(plan.shards, n), reps)
        print(
            row(
                f"Plan.shards({n})",
                times,
                f"{len(shards)} shards, largest {max(map(len, shards))} jobs",
            )
        )
    for n in SHARDS:
        times, matrix = timed(functools.partial(github_matrix, plan, n), reps)
        print(row(f"github_matrix(plan, {n})", times, f"{len(matrix['include'])} entries"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--reps", type=int, default=20, help="repetitions per measurement (default 20)"
    )
    args = parser.parse_args(argv)
    engine_calls = watch_engine()
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        root = Path(tmp)
        explicit = {
            "manylinux2014": "registry.example.invalid/acme/manylinux2014:2026.01",
            "manylinux_2_28": "registry.example.invalid/acme/manylinux_2_28:2026.01",
            "musllinux_1_2": "pypa",
        }
        big = write_recipe(root, list(explicit), explicit)
        bench(big, args.reps, "pyarrow scale: 6 Pythons x 3 policies x 6 archs, 34 dependencies")
        local = write_recipe(root, ["manylinux_2_31"], {"manylinux_2_31": "local"})
        bench(
            local, args.reps, "local images: manylinux_2_31 x 6 archs (image tags from definitions)"
        )
    contacted = "yes: " + ", ".join(engine_calls) if engine_calls else "no"
    print(f"\nengine contacted while planning: {contacted}")
    return 1 if engine_calls else 0


if __name__ == "__main__":
    sys.exit(main())
