"""Are two builds of one interpreter the same? E.g. an emulated `make install` against the
native byte-compiling one (images/local/scripts/native-pyc.sh).

    python benchmarks/interpreter_equivalence.py --arch aarch64 A.tar.gz B.tar.gz

Each tarball (a /opt/python/<tag> from the interpreter store) is unpacked into a fresh
container of an image of its architecture (default: the newest local runtime image), which
prints its sysconfig variables, sys.implementation, which extension modules import, and
checks the standard library's .pyc files: present at the three optimisation levels, with
the interpreter's own magic number and the source's mtime (so imports never recompile).
The two reports are compared; paths and build dates are the only expected differences.
Exit 0 when nothing else differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import archs
from orchestrator.container import engine

MODULES = (
    "_ssl",
    "_ctypes",
    "_sqlite3",
    "zlib",
    "_decimal",
    "readline",
    "_bz2",
    "_lzma",
    "_uuid",
    "_dbm",
    "_gdbm",
    "_curses",
    "_hashlib",
    "pyexpat",
    "_struct",
    "select",
)
PROBE = r"""
import importlib, importlib.util, json, os, sys, sysconfig
out = {"implementation": {k: str(v) for k, v in vars(sys.implementation).items()},
       "version": sys.version.split()[0], "config": {}, "modules": {}, "pyc": {}}
for key, value in sorted(sysconfig.get_config_vars().items()):
    out["config"][key] = str(value)
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
        out["modules"][name] = "ok"
    except Exception as exc:
        out["modules"][name] = f"{type(exc).__name__}: {exc}"
lib = sysconfig.get_path("stdlib")
checked = bad = missing = 0
for root, dirs, files in os.walk(lib):
    if "site-packages" in root or "test" in root.split(os.sep):
        continue
    for f in files:
        if not f.endswith(".py") or "bad" in f:
            continue
        src = os.path.join(root, f)
        for opt in ("", 1, 2):
            pyc = importlib.util.cache_from_source(src, optimization=opt)
            if not os.path.exists(pyc):
                missing += 1
                continue
            head = open(pyc, "rb").read(16)
            mtime = int.from_bytes(head[8:12], "little")
            checked += 1
            if head[:4] != importlib.util.MAGIC_NUMBER or mtime != int(os.stat(src).st_mtime) & 0xFFFFFFFF:
                bad += 1
out["pyc"] = {"checked": checked, "stale_or_foreign": bad, "missing": missing}
print("ORCH-REPORT " + json.dumps(out))
"""
# Vary between any two builds: where and when they were made.
VOLATILE = (
    "abs_builddir",
    "abs_srcdir",
    "BINDIR",
    "datarootdir",
    "srcdir",
    "CONFIG_ARGS",
    "TZPATH",
)


def report(tarball: Path, image: str, arch: str) -> dict[str, object]:
    c = engine.create_container(
        image,
        labels={engine.LABEL: "benchmark"},
        platform=archs.get(arch).platform,
        network_mode="none",
    )
    try:
        engine.put_tar(c, tarball.read_bytes(), "/opt/python")
        tag = tarball.name.split("-")[0] + "-" + tarball.name.split("-")[1]
        chunks: list[bytes] = []
        result = engine.exec_stream(
            c, [f"/opt/python/{tag}/bin/python3", "-c", PROBE, ",".join(MODULES)], chunks.append
        )
        text = b"".join(chunks).decode(errors="replace")
        if result.exit_code != 0:
            raise SystemExit(f"{tarball.name}: probe failed:\n{text[-3000:]}")
        line = next(x for x in text.splitlines() if x.startswith("ORCH-REPORT "))
        return dict(json.loads(line.removeprefix("ORCH-REPORT ")))
    finally:
        engine.remove_container(c)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="aarch64")
    ap.add_argument("--image", help="an image of that architecture with the runtime libraries")
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    image = args.image or _runtime_image(args.arch)
    ra, rb = report(args.a, image, args.arch), report(args.b, image, args.arch)
    differences = 0
    for section in ("implementation", "modules", "config"):
        sa, sb = ra[section], rb[section]
        assert isinstance(sa, dict) and isinstance(sb, dict)
        for key in sorted(set(sa) | set(sb)):
            if sa.get(key) != sb.get(key) and key not in VOLATILE:
                differences += 1
                print(f"{section}.{key}: {sa.get(key)!r} != {sb.get(key)!r}")
    for name, r in (("A", ra), ("B", rb)):
        print(f"{name}: {r['version']}, modules {r['modules']}, pyc {r['pyc']}")
        pyc = r["pyc"]
        assert isinstance(pyc, dict)
        differences += int(pyc["stale_or_foreign"] > 0)
    if ra["pyc"] != rb["pyc"]:  # the same files byte-compiled (a few are excluded by make)
        differences += 1
    print(f"{len(ra['config'])} config variables compared; {differences} difference(s)")
    return 1 if differences else 0


def _runtime_image(arch: str) -> str:
    refs = [
        i.ref
        for i in engine.list_images("io.orch.variant=runtime")
        if i.labels.get("io.orch.arch") == arch and i.labels.get("io.orch.suite") == "bullseye"
    ]
    if not refs:
        raise SystemExit(f"no local bullseye runtime image for {arch}: pass --image")
    return refs[0]


if __name__ == "__main__":
    raise SystemExit(main())
