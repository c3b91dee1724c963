"""Byte-compiling natively gives the same .pyc files as emulation: the standard library of
an interpreter compiled for an emulated architecture (its .pyc written under QEMU by its own
`make install`) is byte-compiled again by the host's interpreter of the same source, with
`make install`'s arguments, and every .pyc is compared byte for byte.

    python benchmarks/native_pyc_identity.py EMULATED.tar.gz NATIVE.tar.gz [--arch aarch64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.emulation.compile_aid import interpreter_accelerator
from orchestrator.images import definition

SCRIPT = r"""
set -e
lib=$(ls -d /opt/python/$TAG/lib/python3.*)
sums() { find "$lib" -path "$lib/site-packages" -prune -o -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; }
sums > /tmp/emulated.sums
N=/opt/orch-native/$TAG/bin/python3
$N -c 'import os, shutil, sys
lib = sys.argv[1]
for root, _d, files in os.walk(lib):
    for f in files:
        if f.endswith(".pyc"):
            dst = os.path.join("/tmp/emu", os.path.relpath(os.path.join(root, f), lib))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(root, f), dst)' "$lib"
find "$lib" -path "$lib/site-packages" -prune -o -name '*.pyc' -exec rm -f {} +
start=$(date +%s)
PYTHONPATH=$lib /opt/orch-native/$TAG/bin/python3 -Wi $lib/compileall.py -q -o 0 -o 1 -o 2 \
    -d $lib -f -x 'bad_coding|badsyntax|site-packages' $lib || true
echo "native compileall: $(( $(date +%s) - start )) s"
sums > /tmp/native.sums
echo "pyc files: $(wc -l < /tmp/emulated.sums) emulated, $(wc -l < /tmp/native.sums) native"
$N -c 'import marshal, os, sys
lib = sys.argv[1]
same = ref_flags_only = different = only_native = 0
for root, _d, files in os.walk(lib):
    for f in files:
        if not f.endswith(".pyc") or "site-packages" in root:
            continue
        rel = os.path.relpath(os.path.join(root, f), lib)
        new = open(os.path.join(lib, rel), "rb").read()
        try:
            old = open(os.path.join("/tmp/emu", rel), "rb").read()
        except FileNotFoundError:
            only_native += 1
            print("only native:", rel)
            continue
        if old == new:
            same += 1
        elif old[:16] == new[:16] and marshal.loads(old[16:]) == marshal.loads(new[16:]):
            ref_flags_only += 1  # marshal marks shared objects by refcount: same code
        else:
            different += 1
            print("DIFFERENT:", rel)
print(f"pyc: {same} byte-identical, {ref_flags_only} equal code objects (marshal ref flags "
      f"differ), {different} different, {only_native} only native")' "$lib"
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("emulated", type=Path)
    ap.add_argument("native", type=Path)
    ap.add_argument("--arch", default="aarch64")
    args = ap.parse_args()
    tag = "-".join(args.emulated.name.split("-")[:2])
    plan = definition.plan_builder(definition.load_suite("bullseye"), archs.get(args.arch))
    info = engine.inspect_image(plan.ref)
    if info is None:
        raise SystemExit(f"{plan.ref} is not built")
    aid = interpreter_accelerator("auto")(args.arch, info, print)
    if aid is None:
        raise SystemExit("no accelerator (its amd64 loader runs the native interpreter)")
    c = engine.create_container(
        plan.ref,
        labels={engine.LABEL: "benchmark"},
        mounts=aid.mounts,
        platform=archs.get(args.arch).platform,
        network_mode="none",
    )
    try:
        for d in ("/opt/python", "/opt/orch-native"):
            engine.exec_stream(c, ["mkdir", "-p", d], lambda _b: None)
        engine.put_tar(c, args.emulated.read_bytes(), "/opt/python")
        engine.put_tar(c, args.native.read_bytes(), "/opt/orch-native")
        t0 = time.monotonic()
        out: list[bytes] = []
        result = engine.exec_stream(
            c, ["sh", "-c", SCRIPT], out.append, env={**aid.env, "TAG": tag}
        )
        print(b"".join(out).decode(errors="replace"))
        print(f"exit {result.exit_code}, {time.monotonic() - t0:.0f} s in all")
        return result.exit_code
    finally:
        engine.remove_container(c)


if __name__ == "__main__":
    raise SystemExit(main())
