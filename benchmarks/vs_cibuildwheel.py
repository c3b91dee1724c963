"""orch against cibuildwheel on the same projects, the same local images and the same
dependency sources, in one run; prints the table and the ratios.

    python benchmarks/vs_cibuildwheel.py --mirror DIR [--archs x86_64,aarch64]
        [--pythons 1,3] [--projects multi-deps,cxxgen] [--work DIR] [--json FILE]

For each project x arch x number of Pythons:
  prime      an orch build into a throwaway cache, not measured: it makes the images
             (and their interpreters) and the toolchain roots present, as the issue's
             "cold" assumes, and names the image cibuildwheel is then pointed at;
  orch cold  an empty ORCH_CACHE_DIR (no dependencies, wheel cache or compile cache);
  orch warm  the same command again (a new run, new output directory): an identical
             wheel's audit and verification are reused from the cold run's record;
  orch recheck  warm with --recheck: the audit and verification run again (the honest
             comparison when cibuildwheel tests every wheel);
  orch touch warm, after one C++ source file was changed (the compile cache misses once);
  cibuildwheel  4.x from the package index in a throwaway venv, the same image through
             CIBW_MANYLINUX_<ARCH>_IMAGE, the dependencies built in before-all from the
             same source tarballs (copied from the mirror into the project) by the same
             scripts orch runs (rendered from orch's recipes by `build_script`: the same
             flags and options, so both sides compile the same code: static, PIC archives
             with hidden symbols, headers and pkg-config/CMake files; no shared libraries,
             programs, docs or tests), one after the other at -j of every core; both
             testing the wheel with the recipe's test command.

Projects: examples/multi-deps (five static dependencies, one C++ file) and "cxxgen", a
generated C++ extension of CXXGEN_UNITS translation units instantiating standard
templates (no dependencies): the compile-heavy case. The mirror is a directory of
<sha256>-named tarballs (scripts/mirror-from-debian.sh makes one; ORCH_SOURCE_MIRROR).
The load average is printed with every measurement: the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.container.hostenv import CONTAINER_CA_PATH, find_ca_bundle
from orchestrator.deps.buildsys import build_script
from orchestrator.recipe.load import load_dependency_file

HERE = Path(__file__).resolve().parents[1]
PYTHONS = ("3.9", "3.11", "3.13")
# The interpreters each local image has (aarch64's cp311 is not compiled on this machine):
# "--pythons 3" on aarch64 means as many of these as there are.
PYTHONS_BY_ARCH = {"aarch64": ("3.9", "3.13")}
CIBW_VERSION = "cibuildwheel==4.3.5"
CXXGEN_UNITS = 12
DEPS = ("bzip2", "lz4", "xz", "brotli", "snappy")  # examples/multi-deps' dependencies
CIBW_IMAGES: dict[str, str] = {}  # --cibw-image ARCH=REF
DEPS_DIR = "_bench_deps"  # in cibuildwheel's project copy (/project in its container)


@dataclass(frozen=True)
class Row:
    project: str
    arch: str
    pythons: int
    cibw: float
    cold: float
    warm: float
    recheck: float  # warm with --recheck: the checks run again
    touch: float
    load: float
    ccache_warm: str
    stages_warm: dict[str, float]
    stages_recheck: dict[str, float]


# --- the projects ---------------------------------------------------------------------


def cxxgen(root: Path) -> Path:
    """A C++ extension of CXXGEN_UNITS translation units, each instantiating maps,
    strings, sorts and streams (a few seconds of g++ each, natively)."""
    pkg = root / "src" / "cxxgen"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    names = [f"unit{i:02d}" for i in range(CXXGEN_UNITS)]
    for i, name in enumerate(names):
        (pkg / f"{name}.cpp").write_text(_unit(name, i))
    decls = "".join(f"long {n}();\n" for n in names)
    total = " + ".join(f"{n}()" for n in names)
    (pkg / "_cxxgen.cpp").write_text(
        "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n" + decls + "static PyObject *total"
        f"(PyObject *, PyObject *) {{ return PyLong_FromLong({total}); }}\n"
        'static PyMethodDef m[] = {{"total", total, METH_NOARGS, ""}, {nullptr, nullptr, 0, '
        'nullptr}};\nstatic struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "_cxxgen", '
        "nullptr, -1, m};\nPyMODINIT_FUNC PyInit__cxxgen(void) { return PyModule_Create(&d); }\n"
    )
    sources = ", ".join(f'"src/cxxgen/{n}.cpp"' for n in ["_cxxgen", *names])
    (root / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        f'setup(ext_modules=[Extension("cxxgen._cxxgen", sources=[{sources}], '
        'language="c++", extra_compile_args=["-std=c++17"])])\n'
    )
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "cxxgen"\nversion = "1.0"\n[tool.setuptools]\n'
        'package-dir = {"" = "src"}\npackages = ["cxxgen"]\n'
    )
    (root / "orch.yaml").write_text(
        "schema: 1\nname: cxxgen\nproject: .\npython: ['3.9']\n"
        "platforms: [manylinux_2_31]\narchs: [x86_64]\ntest:\n"
        '  command: python -c "import cxxgen._cxxgen as m; print(m.total())"\n'
    )
    return root


def _unit(name: str, seed: int) -> str:
    return f"""#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>
namespace {{
template <int N> struct Step {{
  static long run(std::map<std::string, long> &m) {{
    std::ostringstream os; os << "k" << N; m[os.str()] += N; return Step<N - 1>::run(m) + N;
  }}
}};
template <> struct Step<0> {{ static long run(std::map<std::string, long> &) {{ return 0; }} }};
}}
long {name}() {{
  std::map<std::string, long> m; std::unordered_map<long, std::string> u;
  std::vector<long> v;
  for (long i = 0; i < 100; ++i) {{ v.push_back((i * {seed + 7}) % 97); u[i] = std::to_string(i); }}
  std::sort(v.begin(), v.end());
  return Step<60>::run(m) + v.front() + static_cast<long>(u.size()) + {seed};
}}
"""


def prepare(project: str, arch: str, pythons: int, dest: Path) -> Path:
    """The project copy with its recipe narrowed to arch and the first `pythons` Pythons."""
    shutil.rmtree(dest, ignore_errors=True)
    if project == "cxxgen":
        cxxgen(dest)
    else:
        shutil.copytree(HERE / "examples" / project, dest)
    recipe = yaml.safe_load((dest / "orch.yaml").read_text())
    recipe["python"] = list(PYTHONS_BY_ARCH.get(arch, PYTHONS)[:pythons])
    recipe["archs"] = [arch]
    (dest / "orch.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return dest


def touch_source(project_dir: Path) -> None:
    """Change one C++ source file's code (a comment alone would be a ccache hit in its
    preprocessed mode): an unused internal constant."""
    src = sorted((project_dir / "src").rglob("*.cpp"))[-1]
    src.write_text(src.read_text() + f"\nstatic const int orch_touched = {int(time.time())};\n")


# --- orch -----------------------------------------------------------------------------


def orch(
    project: Path, out: Path, env: dict[str, str], *extra: str
) -> tuple[float, dict[str, Any]]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "orchestrator", "build", "-f", str(project / "orch.yaml"), *extra]
    t0 = time.monotonic()
    proc = subprocess.run(
        [*cmd, "-o", str(out), "--plain"], cwd=HERE, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"orch build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads((out / ".orch" / "report.json").read_text())
    return wall, report


def mean_stages(report: dict[str, Any]) -> dict[str, float]:
    jobs = report["jobs"]
    names = dict.fromkeys(k for j in jobs for k in j.get("stages", {}))
    return {n: round(sum(j["stages"].get(n, 0.0) for j in jobs) / len(jobs), 1) for n in names}


def checks_status(report: dict[str, Any]) -> str:
    """ "reused" when every job's checks were reused, else "run" (or a mix)."""
    found = {j.get("checks", {}).get("status", "run") for j in report["jobs"]}
    return "/".join(sorted(found))


def ccache_counts(report: dict[str, Any]) -> str:
    hits = sum(j.get("compile_cache", {}).get("hits", 0) for j in report["jobs"])
    misses = sum(j.get("compile_cache", {}).get("misses", 0) for j in report["jobs"])
    return f"{hits}h/{misses}m"


# --- cibuildwheel ---------------------------------------------------------------------


def cibw_venv(work: Path) -> Path:
    venv = work / "cibw-venv"
    exe = venv / "bin" / "cibuildwheel"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", CIBW_VERSION], check=True)
    return exe


def dep_sources(mirror: Path) -> dict[str, str]:
    """Each dependency's tarball name, from orch's recipe library (sha256 and filename)."""
    out = {}
    for name in DEPS:
        source = yaml.safe_load((HERE / "recipes" / f"{name}.yaml").read_text())["source"]
        if not (mirror / source["sha256"]).is_file():
            raise SystemExit(f"{mirror} has no {source['filename']} ({source['sha256']})")
        out[name] = source["sha256"]
    return out


CIBW_PREFIX = "/opt/deps"  # cibuildwheel's prefix (orch's is DEP_PREFIX)


def before_all(shas: dict[str, str]) -> str:
    """cibuildwheel's before-all: each dependency unpacked and built by the very script
    orch runs in its dependency container (`build_script`: the same flags, configure
    options, recipe script and post-install checks), one after the other, at -j of
    every core. Both sides compile the same code: static, PIC, hidden archives only."""
    lines = ["set -euo pipefail", f"D=/project/{DEPS_DIR}"]
    for name in DEPS:
        dep = load_dependency_file(HERE / "recipes" / f"{name}.yaml")
        if dep.source.patches:
            raise SystemExit(f"{name}: recipe patches are not applied in before-all")
        work = f"/tmp/deps/{name}"
        script = build_script(
            dep,
            src_dir=f"{work}/src",
            build_dir=f"{work}/build",
            prefix=CIBW_PREFIX,
            jobs=os.cpu_count() or 1,
        )
        lines += [
            f"mkdir -p {work}/src {work}/build",
            f"tar -xf $D/{shas[name]} -C {work}/src"
            f" --strip-components={dep.source.strip_components}",
            f"(cd {work}/src && bash -euo pipefail -c {shlex.quote(script)})",
        ]
    return "\n".join(lines) + "\n"


def cibuildwheel(
    exe: Path, project: Path, arch: str, report: dict[str, Any], mirror: Path, out: Path
) -> float:
    """cibuildwheel on a copy of the project, on the image orch's report names."""
    recipe = yaml.safe_load((project / "orch.yaml").read_text())
    copy = out.parent / f"{out.name}-project"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(project, copy)
    env = {**os.environ, "CIBW_ARCHS": arch, "CIBW_PLATFORM": "linux"}
    # a name lookup that fails once under load must not cost a many-minute run; the
    # host's CA bundle mounted as orch mounts it (behind a TLS-intercepting proxy the
    # compiled interpreters' pip trusts nothing else)
    retries = "PIP_RETRIES=10 PIP_TIMEOUT=60"
    ca = find_ca_bundle()
    mount = f" --volume={ca}:{CONTAINER_CA_PATH}:ro" if ca else ""
    if ca:
        retries += f" PIP_CERT={CONTAINER_CA_PATH} SSL_CERT_FILE={CONTAINER_CA_PATH}"
    env["CIBW_ENVIRONMENT"] = retries
    if recipe.get("dependencies"):
        shas = dep_sources(mirror)
        (copy / DEPS_DIR).mkdir()
        for sha in shas.values():
            shutil.copy(mirror / sha, copy / DEPS_DIR / sha)
        # a file, not the command itself: cibuildwheel formats its commands ({project})
        (copy / DEPS_DIR / "before_all.sh").write_text(before_all(shas))
        env["CIBW_BEFORE_ALL"] = f"bash /project/{DEPS_DIR}/before_all.sh"
        env["CIBW_ENVIRONMENT"] = (
            f'{retries} CPPFLAGS="-I{CIBW_PREFIX}/include" LDFLAGS="-L{CIBW_PREFIX}/lib" '
            f'PKG_CONFIG_PATH="{CIBW_PREFIX}/lib/pkgconfig"'
        )
    tags = sorted({"cp" + j["python"].replace(".", "") for j in report["jobs"]})
    env["CIBW_BUILD"] = " ".join(f"{t}-manylinux_{arch}" for t in tags)
    # one image with every Python: per-Python job images hold one interpreter each
    image = CIBW_IMAGES.get(arch) or report["jobs"][0]["image"]
    env[f"CIBW_MANYLINUX_{arch.upper()}_IMAGE"] = image
    env["CIBW_TEST_COMMAND"] = " ".join(recipe["test"]["command"].split())
    env["CIBW_CONTAINER_ENGINE"] = f"docker; create_args: --pull=never{mount}"
    t0 = time.monotonic()
    proc = subprocess.run(  # cibuildwheel wants the project inside its working directory
        [str(exe), "--output-dir", str(out.resolve()), "."],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    built = list(out.glob("*.whl"))
    if proc.returncode != 0 or len(built) != len(tags):
        print(f"cibuildwheel failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}", flush=True)
        return 0.0  # the row keeps orch's figures
    return wall


# --- the run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    cibw: Path | None  # None: cibuildwheel not run
    earlier: dict[tuple[str, str, int], float]  # (project, arch, pythons) -> its time
    orch: bool = True  # False: cibuildwheel only (its time reused by a later --cibw-from)
    warm_only: bool = False  # no cold run: warm on the priming cache (after one settling run)


def earlier_cibw(path: Path | None) -> dict[tuple[str, str, int], float]:
    """cibuildwheel's times from an earlier run's --json rows: it does not change with
    orch's code, and on aarch64 it takes many minutes."""
    if path is None:
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["project"], r["arch"], r["pythons"]): r["cibw"] for r in rows if r["cibw"]}


def measure(project: str, arch: str, pythons: int, work: Path, mirror: Path, mode: Mode) -> Row:
    base = work / f"{project}-{arch}-{pythons}"
    src = prepare(project, arch, pythons, base / "src")
    env = {**os.environ, "ORCH_SOURCE_MIRROR": str(mirror), **toolchains()}
    # one priming cache per project x arch: its dependencies serve every Python count
    prime_env = {**env, "ORCH_CACHE_DIR": str(work / f"{project}-{arch}-prime-cache")}
    _, report = orch(src, base / "prime-out", prime_env)  # images and roots present
    load = os.getloadavg()[0]
    if not mode.orch:
        cibw_time = (
            cibuildwheel(mode.cibw, src, arch, report, mirror, base / "cibw") if mode.cibw else 0.0
        )
        return Row(project, arch, pythons, cibw_time, 0.0, 0.0, 0.0, 0.0, load, "", {}, {})
    if mode.warm_only:  # the priming cache has the dependencies; one run settles the rest
        env["ORCH_CACHE_DIR"] = prime_env["ORCH_CACHE_DIR"]
        cold, _ = 0.0, orch(src, base / "settle", env)
    else:
        shutil.rmtree(base / "cache", ignore_errors=True)
        env["ORCH_CACHE_DIR"] = str(base / "cache")
        cold, _ = orch(src, base / "cold", env)
    warm, warm_report = orch(src, base / "warm", env)
    recheck, recheck_report = orch(src, base / "recheck", env, "--recheck")
    touch_source(src)
    touch, _ = orch(src, base / "touch", env)
    print(
        f"  orch: cold {cold:.1f} s, warm {warm:.1f} s (checks {checks_status(warm_report)}), "
        f"warm --recheck {recheck:.1f} s, touch {touch:.1f} s",
        flush=True,
    )
    cibw_time = mode.earlier.get((project, arch, pythons), 0.0)
    if mode.cibw and not cibw_time:
        cibw_time = cibuildwheel(mode.cibw, src, arch, report, mirror, base / "cibw")
    return Row(
        project,
        arch,
        pythons,
        cibw_time,
        cold,
        warm,
        recheck,
        touch,
        load,
        ccache_counts(warm_report),
        mean_stages(warm_report),
        mean_stages(recheck_report),
    )


def toolchains() -> dict[str, str]:
    """Toolchain roots (cross gcc, LLVM, the ccache kit) and compiled interpreters stay
    where this machine has them while ORCH_CACHE_DIR is emptied: they are "present", as
    the images are, not part of the cold cache."""
    from orchestrator.emulation.cross_root import cross_dir
    from orchestrator.images.interpreters import store_dir

    return {"ORCH_CROSS_DIR": str(cross_dir()), "ORCH_INTERPRETER_DIR": str(store_dir())}


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.1f}x" if a and b else "   - "


def table(rows: list[Row]) -> str:
    head = (
        f"{'project':11s} {'arch':8s} {'py':>2s} {'cibw':>7s} {'cold':>7s} {'warm':>6s} "
        f"{'recheck':>7s} {'touch':>6s} {'cold x':>6s} {'warm x':>6s} {'rechk x':>7s} "
        f"{'touch x':>7s} {'ccache':>8s} load"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.project:11s} {r.arch:8s} {r.pythons:2d} {r.cibw:6.1f}s {r.cold:6.1f}s "
            f"{r.warm:5.1f}s {r.recheck:6.1f}s {r.touch:5.1f}s {ratio(r.cibw, r.cold):>6s} "
            f"{ratio(r.cibw, r.warm):>6s} {ratio(r.cibw, r.recheck):>7s} "
            f"{ratio(r.cibw, r.touch):>7s} {r.ccache_warm:>8s} {r.load:4.1f}"
        )
    lines.append("")
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.stages_warm.items())
        lines.append(f"warm stages per job ({r.project} {r.arch} {r.pythons} py): {stages}")
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.stages_recheck.items())
        lines.append(f"  with --recheck (checks run again): {stages}")
    natives = {(r.project, r.pythons): r.warm for r in rows if r.arch == "x86_64"}
    for r in rows:
        if r.arch != "x86_64" and (r.project, r.pythons) in natives:
            x = natives[(r.project, r.pythons)]
            lines.append(
                f"orch warm {r.arch} / warm x86_64 ({r.project}, {r.pythons} py): {r.warm / x:.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", type=Path, default=os.environ.get("ORCH_SOURCE_MIRROR"))
    ap.add_argument("--archs", default="x86_64,aarch64")
    ap.add_argument("--pythons", default="1,3")
    ap.add_argument("--projects", default="multi-deps,cxxgen")
    ap.add_argument("--work", type=Path, help="keep the work tree here")
    ap.add_argument("--json", type=Path, help="append each row here as it is measured")
    ap.add_argument("--no-cibuildwheel", action="store_true", help="orch's figures only")
    ap.add_argument("--cibuildwheel-only", action="store_true", help="no orch figures")
    ap.add_argument("--cibw-from", type=Path, help="cibuildwheel's times from earlier --json")
    ap.add_argument("--warm-only", action="store_true", help="no cold run (shorter)")
    ap.add_argument(
        "--cibw-image",
        action="append",
        default=[],
        metavar="ARCH=REF",
        help="cibuildwheel's image for ARCH (one holding every Python measured)",
    )
    args = ap.parse_args()
    CIBW_IMAGES.update(dict(item.split("=", 1) for item in args.cibw_image))
    if args.mirror is None:
        raise SystemExit("--mirror DIR (or ORCH_SOURCE_MIRROR): the dependency tarballs")
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()}", flush=True)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vs-")))
        work.mkdir(parents=True, exist_ok=True)
        cibw = None if args.no_cibuildwheel else cibw_venv(work)
        mode = Mode(cibw, earlier_cibw(args.cibw_from), not args.cibuildwheel_only, args.warm_only)
        for arch in args.archs.split(","):
            for project in args.projects.split(","):
                for n in (int(p) for p in args.pythons.split(",")):
                    print(f"{project} {arch} {n} Python(s) ...", flush=True)
                    row = measure(project, arch, n, work, args.mirror.resolve(), mode)
                    rows.append(row)
                    print(table([row]).splitlines()[2], flush=True)
                    if args.json:
                        with args.json.open("a") as f:
                            f.write(json.dumps(asdict(row)) + "\n")
    print()
    print(table(rows))
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
