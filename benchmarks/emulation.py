"""Emulated builds: x86_64 native against every emulated architecture, plain and accelerated.

    python benchmarks/emulation.py [--mirror DIR] [--project NAME|PATH] [--reps 5]
                                   [--archs aarch64,armv7l,ppc64le,s390x]
                                   [--plain-archs ARCHS] [--no-compile] [--json FILE]
                                   [--keep DIR] [--rounds N]

One run measures, one after the other on this host:

1. compiling a small C file (Python.h, bzlib.h) inside the aarch64 build container: x86_64
   native, the image's own gcc (emulated), the cross gcc and clang (accelerated); best of
   --reps, timed inside the container (skip with --no-compile);
2. the project end to end with the real CLI, `orch build --only <one Python> --emulation=...`,
   per architecture: plain QEMU, the cross gcc where it applies, and LLVM, each from an
   empty orch cache (so static dependencies are built cold), with its audit and its
   verification (tests run in the target's runtime image, emulated). Each is compared with
   x86_64 native on the same image family: bullseye (manylinux_2_31, cp39) for aarch64 and
   armv7l, bookworm (manylinux_2_36, cp311) for ppc64le and s390x, whose bullseye packages
   the mirror no longer serves. Plain QEMU is slow (ppc64le and s390x most):
   --plain-archs measures it on a subset and the table says which.

The project is examples/multi-deps (five static dependencies) when the sources of all its
dependencies are in the mirror directory (--mirror or $ORCH_TEST_LIBRARY_MIRROR; files
named by sha256 or by filename); else "static-subset", a C++ extension generated here that
links four recipes of orch's library (bzip2 and lz4 built with make, snappy with CMake, xz
with autotools) when the mirror has those; else examples/hello-bz2 (no dependencies: its
build is mostly pip under emulation, so it shows little of what acceleration does).
--project picks one (static-subset, an example name, or a directory with an orch.yaml).
The output says which was used and why.

Images and the toolchain roots (cross and LLVM) are prepared first and not timed (like
images, they are built once per host); $ORCH_CROSS_DIR points every measurement at them.

On a shared host wall times swing with other work: --rounds N runs the natives and the
accelerated builds N times over and takes each ratio against its own round's native run
(the median is reported); every run also records its CPU seconds (its containers'
cgroups and orch's own), which hardly depend on the load, and the pip network retries in
its logs (a stalled download lengthens the wall time, not the build).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.container import engine  # noqa: E402
from orchestrator.container.types import LABEL_JOB, LABEL_PID  # noqa: E402
from orchestrator.emulation import accel, cross_root  # noqa: E402
from orchestrator.errors import OrchError  # noqa: E402
from orchestrator.images.local import ensure_local_image  # noqa: E402

EXAMPLES = ROOT / "examples"
RECIPES = ROOT / "recipes"
MIRROR_ENV = "ORCH_TEST_LIBRARY_MIRROR"
EMULATED = ("aarch64", "armv7l", "ppc64le", "s390x")
# Image family per architecture: (suite, policy, Python).
FAMILY = {
    "bullseye": ("manylinux_2_31", "3.9"),
    "bookworm": ("manylinux_2_36", "3.11"),
}
SUITE = {"aarch64": "bullseye", "armv7l": "bullseye", "ppc64le": "bookworm", "s390x": "bookworm"}
MODES = ("plain", "gcc-cross", "llvm")  # per emulated architecture, in this order
C_FILE = r"""
#include <Python.h>
#include <bzlib.h>
#include <stdio.h>
static unsigned mix(const char *s) { unsigned h = 2166136261u; while (*s) h = (h ^ (unsigned char)*s++) * 16777619u; return h; }
int main(void) { printf("%s %u %d\n", BZ2_bzlibVersion(), mix("orch"), PY_MAJOR_VERSION); return 0; }
"""
CFLAGS = "-I/usr/include/python3.9 -O2 -Wall -c /b/p.c -o /b/p.o"


@dataclass
class Run:
    label: str
    arch: str
    mode: str
    suite: str
    seconds: float  # wall time of `orch build`
    ok: bool
    wheel: str
    compiler: str  # what the job log's first line says built it
    deps_seconds: float  # sum over dependency builds (they run in parallel)
    deps: dict[str, float]  # each dependency's build
    load: float  # the host's 1-minute load average when the run started (others' work)
    stages: dict[str, float]
    round: int = 1  # --rounds: which pass over the natives and accelerated runs
    cpu: float = 0.0  # CPU seconds of its containers and of orch itself (ContainerCpu)
    retries: int = 0  # pip's network retries in its logs: a wall time to distrust
    prefill: float = 0.0  # the build-requirement prefill's wall time (network, pip)
    # its CPU seconds: the prefill container's, plus the host's pip for emulated jobs
    # (natfetch); part of `cpu` already
    prefill_cpu: float = 0.0


# --- which project ----------------------------------------------------------------------


def dependency_names(project: Path) -> list[str]:
    data = yaml.safe_load((project / "orch.yaml").read_text())
    return [str(d["use"]) for d in data.get("dependencies") or [] if "use" in d]


def missing_sources(project: Path, mirror: Path | None) -> list[str]:
    missing = []
    for name in dependency_names(project):
        src = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["source"]
        here = mirror is not None and any(
            (mirror / str(src[k])).is_file() for k in ("sha256", "filename") if k in src
        )
        if not here:
            missing.append(name)
    return missing


def pick_project(choice: str | None, mirror: Path | None, work: Path) -> tuple[Path, str]:
    if choice:
        path = _named_project(choice, work)
        missing = missing_sources(path, mirror)
        if missing:
            raise SystemExit(f"{path.name}: the mirror lacks the sources of {', '.join(missing)}")
        return path, "asked for with --project"
    multi = EXAMPLES / "multi-deps"
    missing = missing_sources(multi, mirror)
    if not missing:
        return multi, f"every dependency's source is in {mirror}"
    where = f"the mirror {mirror}" if mirror else "no mirror given"
    why = f"examples/multi-deps needs {', '.join(missing)}, not in {where}"
    subset = static_subset(work)
    if not missing_sources(subset, mirror):
        return subset, f"{why}; the static-subset dependencies are there"
    return EXAMPLES / "hello-bz2", f"{why}: fell back"


def _named_project(choice: str, work: Path) -> Path:
    if choice == "static-subset":
        return static_subset(work)
    return EXAMPLES / choice if (EXAMPLES / choice).is_dir() else Path(choice).resolve()


SUBSET_RECIPE = """\
schema: 1
name: statsub
project: .
python: ["3.9"]
platforms: [manylinux_2_31]
archs: [x86_64]
dependencies:
  - use: bzip2
  - use: lz4
  - use: snappy
  - use: xz
test:
  imports: [statsub]
  command: python -c "import statsub; print(statsub.versions(), statsub.roundtrip(b'orch ' * 4096))"
"""
SUBSET_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "orch-bench-statsub"
version = "1.0.0"
"""
SUBSET_SETUP = """\
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "statsub", ["statsub.cpp"], libraries=["snappy", "lz4", "lzma", "bz2"], language="c++",
    extra_compile_args=["-fvisibility=hidden", "-fvisibility-inlines-hidden"], extra_link_args=["-Wl,--exclude-libs,ALL"])])
"""
SUBSET_CPP = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <snappy-c.h>

#include <cstdint>
#include <vector>

static PyObject *versions(PyObject *, PyObject *) {
    return Py_BuildValue("{s:s,s:s,s:s}", "bzip2", BZ2_bzlibVersion(), "lz4",
                         LZ4_versionString(), "xz", lzma_version_string());
}

// Compress and decompress with every library; returns the compressed sizes.
static PyObject *roundtrip(PyObject *, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return nullptr;
    const char *src = static_cast<const char *>(in.buf);
    const size_t n = static_cast<size_t>(in.len);
    std::vector<char> back(n + 1);

    size_t snlen = snappy_max_compressed_length(n), backlen = n;
    std::vector<char> sn(snlen);
    bool ok = snappy_compress(src, n, sn.data(), &snlen) == SNAPPY_OK &&
              snappy_uncompress(sn.data(), snlen, back.data(), &backlen) == SNAPPY_OK &&
              backlen == n;

    const int in_len = static_cast<int>(n);
    std::vector<char> lz(LZ4_compressBound(in_len));
    int lzlen = LZ4_compress_default(src, lz.data(), in_len, static_cast<int>(lz.size()));
    ok = ok && LZ4_decompress_safe(lz.data(), back.data(), lzlen, in_len) == in_len;

    unsigned bzlen = static_cast<unsigned>(n + n / 100 + 600), bzback = static_cast<unsigned>(n);
    std::vector<char> bz(bzlen);
    ok = ok &&
         BZ2_bzBuffToBuffCompress(bz.data(), &bzlen, const_cast<char *>(src),
                                  static_cast<unsigned>(n), 9, 0, 0) == BZ_OK &&
         BZ2_bzBuffToBuffDecompress(back.data(), &bzback, bz.data(), bzlen, 0, 0) == BZ_OK &&
         bzback == n;

    std::vector<uint8_t> xz(lzma_stream_buffer_bound(n));
    size_t xzlen = 0, inpos = 0, outpos = 0;
    uint64_t limit = UINT64_MAX;
    const uint8_t *usrc = reinterpret_cast<const uint8_t *>(src);
    ok = ok &&
         lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr, usrc, n, xz.data(), &xzlen,
                                 xz.size()) == LZMA_OK &&
         lzma_stream_buffer_decode(&limit, 0, nullptr, xz.data(), &inpos, xzlen,
                                   reinterpret_cast<uint8_t *>(back.data()), &outpos,
                                   n) == LZMA_OK &&
         outpos == n;

    PyBuffer_Release(&in);
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "a roundtrip failed");
        return nullptr;
    }
    return Py_BuildValue("(nnin)", static_cast<Py_ssize_t>(snlen), static_cast<Py_ssize_t>(bzlen),
                         lzlen, static_cast<Py_ssize_t>(xzlen));
}

static PyMethodDef methods[] = {{"versions", versions, METH_NOARGS, ""},
                                {"roundtrip", roundtrip, METH_VARARGS, ""},
                                {nullptr, nullptr, 0, nullptr}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "statsub", nullptr, -1, methods};
PyMODINIT_FUNC PyInit_statsub(void) { return PyModule_Create(&module); }
"""


def static_subset(work: Path) -> Path:
    """A project statically linking four recipes of orch's library (see the docstring)."""
    path = work / "static-subset"
    if not path.is_dir():
        path.mkdir(parents=True)
        (path / "orch.yaml").write_text(SUBSET_RECIPE)
        (path / "pyproject.toml").write_text(SUBSET_PYPROJECT)
        (path / "setup.py").write_text(SUBSET_SETUP)
        (path / "statsub.cpp").write_text(SUBSET_CPP)
    return path


def project_copy(src: Path, dest: Path, arch: str, suite: str, mirror: Path | None) -> Path:
    """The project for one architecture and image family (and the mirror), in a directory
    of its own."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("wheelhouse", ".orch", "build"))
    recipe = dest / "orch.yaml"
    policy, python = FAMILY[suite]
    text = recipe.read_text()
    for key, value in (("archs", f"[{arch}]"), ("platforms", f"[{policy}]")):
        text = re.sub(rf"(?m)^{key}:.*$", f"{key}: {value}", text)
        if not re.search(rf"(?m)^{key}:", text):
            text += f"{key}: {value}\n"
    text = re.sub(r"(?m)^python:.*$", f'python: ["{python}"]', text)
    if mirror is not None and dependency_names(dest):
        text += f"mirrors:\n  - directory: {mirror}\n"
    recipe.write_text(text)
    return recipe


# --- preparation (not timed) ------------------------------------------------------------


def prepare(emulated: list[str]) -> dict[str, dict[str, accel.Accel | accel.Fallback]]:
    """Images, roots and each accelerator's plan per architecture (what the runs will use)."""
    suites = sorted({SUITE[a] for a in emulated})
    wanted = [("x86_64", s) for s in suites] + [(a, SUITE[a]) for a in emulated]
    for arch, suite in wanted:
        for variant in ("runtime", "build"):
            t0 = time.monotonic()
            info = ensure_local_image(arch, variant, suite=suite, on_line=_quiet)
            print(f"image {info.ref}: ready ({time.monotonic() - t0:.1f} s)", flush=True)
    plans: dict[str, dict[str, accel.Accel | accel.Fallback]] = {}
    for arch in emulated:
        image = ensure_local_image(arch, "build", suite=SUITE[arch])
        plans[arch] = {}
        for mode in ("gcc-cross", "llvm"):
            t0 = time.monotonic()
            try:
                plan: accel.Accel | accel.Fallback = accel.plan_accel(arch, image, mode, _quiet)
            except OrchError as exc:
                plan = accel.Fallback(str(exc).splitlines()[0])
            plans[arch][mode] = plan
            print(f"{arch} {mode}: {plan.describe()} ({time.monotonic() - t0:.1f} s)", flush=True)
    return plans


def _quiet(_line: str) -> None:
    pass


# --- 1. compiling one file --------------------------------------------------------------


def compile_times(plans: dict[str, accel.Accel | accel.Fallback], reps: int) -> dict[str, float]:
    cases: dict[str, tuple[str, accel.Accel | None]] = {
        "x86_64 native": ("x86_64", None),
        "aarch64 emulated gcc": ("aarch64", None),
    }
    for mode, plan in plans.items():
        if isinstance(plan, accel.Accel):
            cases[f"aarch64 {mode}"] = ("aarch64", plan)
    return {label: _best_compile(arch, p, reps) for label, (arch, p) in cases.items()}


def _best_compile(arch: str, plan: accel.Accel | None, reps: int) -> float:
    image = ensure_local_image(arch, "build")
    env = accel.apply(plan, {"PATH": image.env.get("PATH", accel.DEFAULT_PATH)})
    container = engine.create_container(
        image.ref,
        env=env,
        mounts=plan.mounts if plan else [],
        platform=engine.image_platform_string(image),
        labels={engine.LABEL_JOB: "bench-emulation"},
    )
    try:
        _exec(container, f"mkdir -p /b && cat > /b/p.c <<'EOF'\n{C_FILE}\nEOF\ngcc {CFLAGS}")
        script = f"date +%s.%N; gcc {CFLAGS}; date +%s.%N"
        times = []
        for _ in range(reps):
            start, end = _exec(container, script).split()[-2:]
            times.append(float(end) - float(start))
        return min(times)
    finally:
        engine.remove_container(container)


def _exec(container: Any, script: str) -> str:
    chunks: list[bytes] = []
    res = engine.exec_stream(container, ["bash", "-euo", "pipefail", "-c", script], chunks.append)
    out = b"".join(chunks).decode(errors="replace")
    if res.exit_code != 0:
        raise SystemExit(f"benchmark command failed ({res.exit_code}):\n{out[-2000:]}")
    return out


# --- 2. the project end to end ----------------------------------------------------------


# Where a container's CPU time is accounted (cgroup v1, v2 with systemd, v2 with cgroupfs).
CGROUP_CPU = (
    ("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage", 1e-9),
    ("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat", 1e-6),
    ("/sys/fs/cgroup/docker/{id}/cpu.stat", 1e-6),
)


def cgroup_cpu_seconds(container_id: str) -> float | None:
    """CPU seconds a running container has used so far, from its cgroup (None: not found)."""
    for pattern, unit in CGROUP_CPU:
        try:
            text = Path(pattern.format(id=container_id)).read_text()
        except OSError:
            continue
        if text.startswith("usage_usec"):
            text = text.split()[1]
        return int(text.split()[0]) * unit
    return None


class ContainerCpu:
    """The CPU seconds used by the containers of one `orch build` (found by its process id
    label), sampled from their cgroups while it runs. Unlike wall time this hardly depends
    on what else the host runs: on a shared host the same build's wall time swung 2-4x
    between rounds. A container that lives less than one interval is missed (probes)."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every = pid, every
        self.seen: dict[str, float] = {}
        self.jobs: dict[str, str] = {}  # container id -> its job label (prefill-...)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        try:
            found = engine.list_containers({LABEL_PID: str(self.pid)})
        except Exception:  # the engine busy or a container gone mid-listing: next time
            return
        for info in found:
            used = cgroup_cpu_seconds(info.handle.id)
            if used is not None:
                self.seen[info.handle.id] = max(used, self.seen.get(info.handle.id, 0.0))
                self.jobs[info.handle.id] = info.labels.get(LABEL_JOB, "")

    def of_jobs(self, prefix: str) -> float:
        """CPU seconds of the containers whose job label starts with `prefix`."""
        return round(
            sum(s for c, s in self.seen.items() if self.jobs.get(c, "").startswith(prefix)), 1
        )

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(sum(self.seen.values()), 1)


def run_list(
    emulated: list[str],
    plain: list[str],
    plans: dict[str, dict[str, accel.Accel | accel.Fallback]],
) -> list[tuple[str, str, str]]:
    """(arch, mode, suite) in the order run: natives first, then every accelerated run,
    then the slow plain ones (so a run cut short still has the accelerated figures)."""
    runs = [("x86_64", "native", s) for s in sorted({SUITE[a] for a in emulated})]
    for arch in emulated:
        for mode in ("gcc-cross", "llvm"):
            if isinstance(plans[arch][mode], accel.Accel):
                runs.append((arch, mode, SUITE[arch]))
    runs += [(arch, "plain", SUITE[arch]) for arch in plain if arch in emulated]  # their order
    return runs


Planned = tuple[str, str, str, int]  # (arch, mode, suite, round)


def with_rounds(runs: list[tuple[str, str, str]], rounds: int) -> list[Planned]:
    """The natives and accelerated runs `rounds` times over, one pass after another, then
    the plain ones once (tagged with the last round). A ratio is taken against the native
    run of its own round, minutes apart: on a shared host the load swings between runs
    (one 2.05x reading came from a native run at a different load), and the median over
    rounds is what the table reports."""
    fast = [r for r in runs if r[1] != "plain"]
    slow = [r for r in runs if r[1] == "plain"]
    return [(*r, n) for n in range(1, rounds + 1) for r in fast] + [(*r, rounds) for r in slow]


def ratios_by_round(runs: list[Run], what: str = "seconds") -> dict[str, dict[str, list[float]]]:
    """arch -> mode -> each round's ratio to that round's x86_64 native run of the same
    image family (successful runs only); what: "seconds" (wall) or "cpu"."""
    native = {(r.round, r.suite): getattr(r, what) for r in runs if r.mode == "native" and r.ok}
    out: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        base = native.get((r.round, r.suite))
        if r.mode != "native" and r.ok and base:
            ratio = round(getattr(r, what) / base, 2)
            out.setdefault(r.arch, {}).setdefault(r.mode, []).append(ratio)
    return out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else round((ordered[mid - 1] + ordered[mid]) / 2, 2)


def end_to_end(
    project: Path,
    mirror: Path | None,
    runs_wanted: list[Planned],
    work: Path,
    cross: Path,
    partial: Path | None = None,
    keep: Path | None = None,
) -> list[Run]:
    """Each run in turn; after each, every figure so far goes to `partial` (if given), so a
    run cut short still leaves the finished ones. keep: a directory that receives each
    run's logs (job and dependency logs, report), for reading the `[time]` lines."""
    runs = []
    for arch, mode, suite, n in runs_wanted:
        name = f"{arch}-{mode}-{suite}" + (f"-{n}" if n > 1 else "")
        recipe = project_copy(project, work / name / "project", arch, suite, mirror)
        out = work / name / "wheelhouse"
        env = {
            **os.environ,
            "ORCH_CACHE_DIR": str(work / name / "cache"),  # cold: dependencies built again
            cross_root.ENV_CROSS_DIR: str(cross),
        }
        tag = "cp" + FAMILY[suite][1].replace(".", "")
        emulation = "plain" if mode == "native" else mode
        cmd = [sys.executable, "-m", "orchestrator", "build", "-f", str(recipe), "-o", str(out),
               "--plain", "--only", f"{tag}-*", f"--emulation={emulation}"]  # fmt: skip
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        before = os.times()
        with subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as popen:
            cpu = ContainerCpu(popen.pid)
            stdout, stderr = popen.communicate()
        seconds = time.monotonic() - t0
        after = os.times()
        proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
        r = _result(f"{arch} {mode}", arch, mode, suite, seconds, out, proc, load)
        r.round = n
        orch_cpu = (after.children_user + after.children_system) - (
            before.children_user + before.children_system
        )
        r.cpu = round(cpu.stop() + orch_cpu, 1)
        r.prefill_cpu = round(cpu.of_jobs("prefill-") + host_fetch_cpu(out / ".orch" / "logs"), 1)
        runs.append(r)
        print(
            f"  [{n}] {r.label}: {seconds:.1f} s, cpu {r.cpu:.1f} s, {'ok' if r.ok else 'FAILED'}, "
            f"load {load:.1f}, "
            + (f"{r.retries} network retries, " if r.retries else "")
            + f"prefill {r.prefill:.1f} s (cpu {r.prefill_cpu:.1f} s), {r.compiler}",
            flush=True,
        )
        if keep is not None and (out / ".orch").is_dir():
            shutil.copytree(out / ".orch", keep / name, dirs_exist_ok=True)
        if r.ok:
            shutil.rmtree(work / name, ignore_errors=True)  # disk: caches are large
        if partial is not None:
            partial.write_text(json.dumps([asdict(x) for x in runs], indent=2))
    return runs


def _result(
    label: str, arch: str, mode: str, suite: str, seconds: float, out: Path, proc: Any, load: float
) -> Run:
    try:
        report = json.loads((out / ".orch" / "report.json").read_text())
    except OSError:
        report = {"jobs": [], "deps": []}
    jobs = report["jobs"]
    ok = proc.returncode == 0 and bool(jobs) and all(j["status"] == "ok" for j in jobs)
    ok = ok and all(j["verify"] and j["verify"][0]["status"] == "passed" for j in jobs)
    if not ok:
        print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    stages: dict[str, float] = {}
    compiler = ""
    for job in jobs:
        for stage, secs in (job.get("stages") or {}).items():
            stages[stage] = round(stages.get(stage, 0.0) + secs, 1)
        compiler = _first_line(job.get("log"))
    wheels = [j["wheel"]["filename"] for j in jobs if j.get("wheel")]
    deps = {str(d["name"]): round(d.get("seconds") or 0.0, 1) for d in report["deps"]}
    total = round(sum(deps.values()), 1)
    return Run(
        label, arch, mode, suite, round(seconds, 1), ok, ", ".join(wheels), compiler, total,
        deps, load, stages, retries=network_retries(out / ".orch" / "logs"),
        prefill=prefill_seconds(out / ".orch" / "logs"),
    )  # fmt: skip


RETRY = "Retrying (Retry("  # pip's line for a connection it will try again


def prefill_seconds(logs: Path) -> float:
    """The runs' longest prefill (`*-prefill.log`: the build requirements fetched while
    the dependencies build), its `[prefill] total` line; in older logs the longest
    command. A download that stalls without a retry shows only here: 200 s where 40-50 s
    was usual for armv7l, 3-6 s for x86_64."""
    totals = [
        float(m)
        for log in logs.glob("*-prefill.log")
        for m in re.findall(r"(?m)^\[prefill\] total ([0-9.]+) s$", log.read_text(errors="replace"))
    ]
    if totals:
        return max(totals)
    times = [
        float(m)
        for log in logs.glob("*-prefill.log")
        for m in re.findall(r"(?m)^\[time\] ([0-9.]+) s$", log.read_text(errors="replace"))
    ]
    return max(times, default=0.0)


def host_fetch_cpu(logs: Path) -> float:
    """CPU seconds of the host's pip fetching for the prefills (natfetch's log lines)."""
    return sum(
        float(m)
        for log in logs.glob("*-prefill.log")
        for m in re.findall(
            r"(?m)^\[natfetch\] host pip [0-9.]+ s, cpu ([0-9.]+) s$",
            log.read_text(errors="replace"),
        )
    )


def network_retries(logs: Path) -> int:
    """How many times pip retried a connection in a run's job logs (the prefill's
    downloads): each can stall the run for seconds to minutes, which its wall time then
    measures instead of the build."""
    count = 0
    for log in logs.glob("*.log"):
        try:
            count += log.read_text(errors="replace").count(RETRY)
        except OSError:
            continue
    return count


def _first_line(log: str | None) -> str:
    """The compiler a job log names (its first line says which accelerator, if any)."""
    if not log:
        return ""
    try:
        head = Path(log).read_text(errors="replace").splitlines()[:3]
    except OSError:
        return ""
    found = next((ln for ln in head if "accelerated:" in ln), "")
    if not found:
        return "the image's gcc" if head else ""
    text = found.split("accelerated:", 1)[1].strip()
    return text.split(" (no cross gcc", 1)[0]


# --- report -----------------------------------------------------------------------------


def show(
    project: Path, why: str, compiles: dict[str, float], runs: list[Run], plain: list[str]
) -> dict[str, Any]:
    name = project.relative_to(ROOT) if project.is_relative_to(ROOT) else project.name
    print(f"\nproject: {name} ({why})")
    if compiles:
        base = compiles["x86_64 native"]
        print("\ncompile one C file (best of reps, inside the aarch64 container):")
        for label, secs in compiles.items():
            print(f"  {label:24} {secs:7.3f} s  {secs / base:5.1f}x native")
    native = {(r.round, r.suite): r.seconds for r in runs if r.mode == "native"}
    print("\norch build, cold dependencies (wall time; ratio to x86_64 native, same family")
    print("and round):")
    print(f"  {'run':24} {'total':>8} {'ratio':>6} {'cpu':>7} {'deps':>8} {'build':>7} "
          f"{'verify':>7} {'load':>5}  wheel")  # fmt: skip
    for r in runs:
        baseline = native.get((r.round, r.suite))
        ratio = r.seconds / baseline if baseline else 0.0
        print(
            f"  {f'[{r.round}] {r.label}':24} {r.seconds:7.1f}s {ratio:5.2f}x {r.cpu:6.1f}s "
            f"{r.deps_seconds:7.1f}s "
            f"{r.stages.get('build', 0):6.1f}s {r.stages.get('verify', 0):6.1f}s {r.load:5.1f}  "
            f"{r.wheel if r.ok else 'FAILED'}"
            + f" (prefill {r.prefill:.1f} s, cpu {r.prefill_cpu:.1f} s"
            + (f", {r.retries} network retries)" if r.retries else ")")
        )
    names = sorted({n for r in runs for n in r.deps})
    if names:
        print("\neach dependency's build (seconds):")
        print(f"  {'run':24} " + " ".join(f"{n:>8}" for n in names))
        for r in runs:
            cells = " ".join(f"{r.deps.get(n, 0):8.1f}" for n in names)
            print(f"  {f'[{r.round}] {r.label}':24} {cells}")
    print("\ncompilers (job log):")
    for r in runs:
        if r.round == 1:
            print(f"  {r.label:20} {r.compiler}")
    same = _same_wheels(runs)
    by_round = ratios_by_round(runs)
    ratios = {a: {m: median(v) for m, v in modes.items()} for a, modes in by_round.items()}
    print("\nper architecture (ratio to x86_64 native; the median over rounds, each round's):")
    for arch, by_mode in ratios.items():
        cells = ", ".join(
            f"{m} {v:.2f}x"
            + (f" ({', '.join(map(str, by_round[arch][m]))})" if len(by_round[arch][m]) > 1 else "")
            for m, v in by_mode.items()
        )
        note = "" if arch in plain else " (plain not measured: --plain-archs)"
        print(f"  {arch:8} {cells}; same wheel names: {same.get(arch, False)}{note}")
    cpu_by_round = ratios_by_round(runs, "cpu")
    cpu_ratios = {a: {m: median(v) for m, v in modes.items()} for a, modes in cpu_by_round.items()}
    print("\nCPU seconds (containers and orch) against x86_64 native's, median over rounds:")
    for arch, by_mode in cpu_ratios.items():
        print(f"  {arch:8} " + ", ".join(f"{m} {v:.2f}x" for m, v in by_mode.items()))
    return {
        "project": str(project),
        "why": why,
        "compile_seconds": compiles,
        "runs": [asdict(r) for r in runs],
        "ratios": ratios,
        "ratios_by_round": by_round,
        "cpu_ratios": cpu_ratios,
        "cpu_ratios_by_round": cpu_by_round,
        "same_wheels": same,
        "host": {"cpus": os.cpu_count(), "load": os.getloadavg()},
    }


def _same_wheels(runs: list[Run]) -> dict[str, bool]:
    """Per emulated architecture: every run succeeded and landed the same wheel names."""
    out: dict[str, bool] = {}
    for arch in {r.arch for r in runs if r.mode != "native"}:
        mine = [r for r in runs if r.arch == arch]
        out[arch] = all(r.ok for r in mine) and len({r.wheel for r in mine}) == 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mirror", type=Path, default=os.environ.get(MIRROR_ENV) or None)
    ap.add_argument("--project", help="example name or project directory (default: see above)")
    ap.add_argument("--archs", default=",".join(EMULATED), help="emulated architectures")
    ap.add_argument(
        "--plain-archs", help="measure plain QEMU only for these, in this order (default: all)"
    )
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the compile timing")
    ap.add_argument("--no-compile", action="store_true", help="skip the one-file timing")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--keep", type=Path, help="copy each run's logs and report here")
    ap.add_argument(
        "--rounds", type=int, default=1, help="passes over the natives and accelerated runs"
    )
    args = ap.parse_args(argv)
    mirror = Path(args.mirror).resolve() if args.mirror else None
    emulated = [a for a in args.archs.split(",") if a]
    unknown = [a for a in emulated if a not in SUITE]
    if unknown:
        raise SystemExit(f"--archs: not an emulated architecture: {', '.join(unknown)}")
    plain = emulated if args.plain_archs is None else [a for a in args.plain_archs.split(",") if a]
    with tempfile.TemporaryDirectory(prefix="orch-bench-emulation-") as tmp:
        project, why = pick_project(args.project, mirror, Path(tmp))
        print(f"project: {project.name} ({why})")
        plans = prepare(emulated)
        compiles = {}
        if not args.no_compile and "aarch64" in plans:
            compiles = compile_times(plans["aarch64"], args.reps)
        if args.rounds < 1:
            raise SystemExit("--rounds: at least 1")
        wanted = with_rounds(run_list(emulated, plain, plans), args.rounds)
        partial = args.json.with_suffix(".partial.json") if args.json else None
        cross = cross_root.cross_dir()
        runs = end_to_end(project, mirror, wanted, Path(tmp), cross, partial, args.keep)
        figures = show(project, why, compiles, runs, plain)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(r.ok for r in runs) and all(figures["same_wheels"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
