"""Interpreters built on demand (images/interpreters.py), against the real engine: a job
for a newly added CPython compiles it once, lands its wheel, and the next run reuses it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator import archs
from orchestrator.container import engine
from orchestrator.images.local import local_image_ref
from tests.support.run import orch, wheel_platforms

# A CPython compile from an empty store (~3-5 min on 2 cores) every run would crowd the CI
# budget: opt in. CI still compiles cp311 on demand through the same path (scripts/test.sh).
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.environ.get("ORCH_TEST_PYTHONS") != "1",
        reason="set ORCH_TEST_PYTHONS=1 (compiles cp313)",
    ),
]

JOB = "cp313-manylinux_2_31_x86_64"


def _remove_job_images(plan_json: str) -> None:
    """The derived images are cheap to rebuild; removing them forces the image step."""
    job = json.loads(plan_json)["jobs"][0]
    for ref in (job["image"], job["runtime_image"]):
        engine.remove_image(ref)


def _build(recipe: Path, out: Path, store: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    proc = orch("build", "-f", str(recipe), "-o", str(out), "--plain", env=_env(store))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / ".orch" / "report.json").read_text())
    logs = "".join(p.read_text() for p in (out / ".orch" / "logs").glob("image-*.log"))
    return report, proc.stderr + logs


def _env(store: Path) -> dict[str, str]:
    return {"ORCH_INTERPRETER_DIR": str(store)}


def test_new_interpreter_built_on_demand_then_cached(
    docker_engine: None, project_copy: Path, tmp_path: Path
) -> None:
    store = tmp_path / "pythons"  # nothing compiled yet
    recipe = project_copy / "orch.yaml"
    recipe.write_text(recipe.read_text().replace('python: ["3.9", "3.11"]', 'python: ["3.13"]'))
    plan = orch("plan", "-f", str(recipe), "--json", env=_env(store))
    assert plan.returncode == 0, plan.stderr
    _remove_job_images(plan.stdout)

    report, output = _build(recipe, tmp_path / "wh1", store)
    (wheel,) = (tmp_path / "wh1").glob("*.whl")
    assert "-cp313-cp313-" in wheel.name and "manylinux_2_31_x86_64" in wheel.name
    assert [j["id"] for j in report["jobs"]] == [JOB]
    assert report["jobs"][0]["verify"][0]["status"] == "passed"
    assert report["images"][0]["status"] == "built"
    # the compile is reported as a phase, in CI's plain lines too
    assert "cp313-cp313: compile (x86_64)" in output
    assert "cp313-cp313: compile (x86_64): done in" in output
    (tarball,) = (store / "manylinux_2_31_x86_64").glob("cp313-cp313-*.tar.gz")
    record = json.loads(tarball.with_name(tarball.name[: -len(".tar.gz")] + ".json").read_text())
    assert record["tag"] == "cp313-cp313" and record["source"]["version"].startswith("3.13.")
    assert record["seconds"] > 10
    built_at = tarball.stat().st_mtime_ns

    # The job image gone (say, a base package changed): rebuilt from the stored interpreter.
    _remove_job_images(plan.stdout)
    report, output = _build(recipe, tmp_path / "wh2", store)
    assert report["images"][0]["status"] == "built"
    assert "cp313-cp313: compile" not in output
    assert "cp313-cp313: source" in output  # its key needs the source's sha256: asked, found
    assert "cp313-cp313 (x86_64): cached" in output
    assert tarball.stat().st_mtime_ns == built_at

    # And with the image present, nothing about interpreters happens at all.
    report, output = _build(recipe, tmp_path / "wh3", store)
    assert report["images"][0]["status"] == "present"
    assert "cp313-cp313: source" not in output and "cp313-cp313: compile" not in output
    assert len(list((tmp_path / "wh3").glob("*cp313-cp313*.whl"))) == 1


PROBE = r"""
import importlib, importlib.util, json, os, sys, sysconfig
mods = {}
for name in ("_ssl", "_ctypes", "_sqlite3", "zlib", "_decimal", "readline", "_bz2", "_lzma"):
    try:
        importlib.import_module(name)
        mods[name] = "ok"
    except Exception as exc:
        mods[name] = repr(exc)
checked = bad = 0
for root, _dirs, files in os.walk(sysconfig.get_path("stdlib")):
    if "site-packages" in root:
        continue
    for f in files:
        pyc = os.path.join(root, "__pycache__", f[:-3] + "." + sys.implementation.cache_tag + ".pyc")
        if f.endswith(".py") and os.path.exists(pyc):
            head = open(pyc, "rb").read(12)
            checked += 1
            src_mtime = int(os.stat(os.path.join(root, f)).st_mtime) & 0xFFFFFFFF
            bad += head[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(head[8:12], "little") != src_mtime
print(json.dumps({"mods": mods, "checked": checked, "bad": bad,
                  "multiarch": sys.implementation._multiarch,
                  "host": sysconfig.get_config_var("HOST_GNU_TYPE")}))
"""


@pytest.mark.emulated
def test_emulated_interpreter_byte_compiled_natively_is_whole(docker_engine: None) -> None:
    """aarch64 cp313 compiled with the cross compiler and its .pyc files written by the
    x86_64 interpreter: the extension modules import under emulation, and every stdlib .pyc
    carries the aarch64 interpreter's magic and its source's mtime (imports never recompile)."""
    built = orch("images", "build-local", "--arch", "aarch64", "--python", "3.13", timeout=7200)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    records = [
        json.loads(p.read_text())
        for p in (Path(os.environ["ORCH_INTERPRETER_DIR"]) / "manylinux_2_31_aarch64").glob(
            "cp313-cp313-*.json"
        )
    ]
    assert any(r.get("accelerated") for r in records), records
    image = next(
        i.ref
        for i in engine.list_images("io.orch.variant=runtime")
        if i.labels.get("io.orch.arch") == "aarch64"
        and "cp313-cp313" in i.labels["io.orch.pythons"]
    )
    proc = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            image,
            "/opt/python/cp313-cp313/bin/python",
            "-c",
            PROBE,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["mods"].values()) == {"ok"}, result["mods"]
    assert result["checked"] > 500 and result["bad"] == 0, result
    assert result["multiarch"] == "aarch64-linux-gnu" and result["host"].startswith("aarch64")


FREE_THREADED_RECIPE = """schema: 1
name: bzdemo
project: .
python: ["3.13t"]
platforms: [{policy}]
archs: [{arch}]
test:
  imports: [bzdemo]
  command: >-
    python -c "import bzdemo, sys, sysconfig;
    assert sysconfig.get_config_var('Py_GIL_DISABLED') == 1 and sys.abiflags == 't', sys.abiflags;
    data = b'orch ' * 1000;
    assert bzdemo.decompress(bzdemo.compress(data), len(data)) == data;
    print('free-threaded', sys.version.split()[0], sysconfig.get_platform())"
"""
FREE_THREADING = 'classifiers = ["Programming Language :: Python :: Free Threading :: 2 - Beta"]\n'


@pytest.mark.parametrize(
    "arch",
    [
        "x86_64",
        "i686",
        pytest.param("aarch64", marks=pytest.mark.emulated),
        pytest.param("armv7l", marks=pytest.mark.emulated),
        # bookworm (manylinux_2_36), the only local family of these two: compiled by clang
        pytest.param("ppc64le", marks=pytest.mark.emulated),
        pytest.param("s390x", marks=pytest.mark.emulated),
    ],
)
def test_free_threaded_wheel_verified_in_its_interpreter(
    docker_engine: None, project_copy: Path, tmp_path: Path, arch: str
) -> None:
    """cp313t (configure --disable-gil; compiled on first use, accelerated where emulated):
    a project declaring free-threading gets a cp313t job, its wheel tagged cp313-cp313t,
    repaired, audited and tested in the runtime image's free-threaded interpreter."""
    pyproject = project_copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace("requires-python", FREE_THREADING + "requires-python", 1))
    recipe = project_copy / "orch.yaml"
    policy = _policy(arch)
    recipe.write_text(FREE_THREADED_RECIPE.format(arch=arch, policy=policy))
    out = tmp_path / "wheelhouse"
    proc = orch(
        "build", "-f", str(recipe), "-o", str(out), "--plain", "--emulation", "auto",
        timeout=7200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (job,) = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
    assert job["id"] == f"cp313t-{policy}_{arch}" and job["status"] == "ok", job
    assert [v["status"] for v in job["verify"]] == ["passed"], job["verify"]
    assert "-runtime:" in job["verify"][0]["image"]
    (wheel,) = out.glob("*.whl")
    assert "-cp313-cp313t-" in wheel.name and f"{policy}_{arch}" in wheel_platforms(wheel.name)
    log = (out / ".orch" / "logs" / f"{job['id']}.log").read_text()
    assert "free-threaded 3.13." in log  # the test ran in the cp313t interpreter
    audit = orch("audit", str(wheel))
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _policy(arch: str) -> str:
    """Bullseye's archive no longer serves ppc64el and s390x: bookworm is their family."""
    return "manylinux_2_36" if arch in ("ppc64le", "s390x") else "manylinux_2_31"


CP39_RECIPE = """schema: 1
name: bzdemo
project: .
python: ["3.9"]
platforms: [manylinux_2_36]
archs: [{arch}]
test:
  imports: [bzdemo]
  command: >-
    python -c "import bzdemo, sys, ssl, hashlib;
    data = b'orch ' * 1000;
    assert bzdemo.decompress(bzdemo.compress(data), len(data)) == data;
    print('cp39 on bookworm', sys.version.split()[0], ssl.OPENSSL_VERSION)"
"""

BOOKWORM = [
    "x86_64",
    pytest.param("ppc64le", marks=pytest.mark.emulated),
    pytest.param("s390x", marks=pytest.mark.emulated),
]


@pytest.mark.parametrize("arch", BOOKWORM)
def test_cp39_wheel_on_bookworm(
    docker_engine: None, project_copy: Path, tmp_path: Path, arch: str
) -> None:
    """Bookworm ships no python3.9: orch compiles bullseye's source against bookworm's
    libraries (OpenSSL 3.0, libffi8) on first use; the cp39 wheel is repaired, audited and
    tested in the runtime image's cp39, whose OpenSSL is bookworm's."""
    recipe = project_copy / "orch.yaml"
    recipe.write_text(CP39_RECIPE.format(arch=arch))
    out = tmp_path / "wheelhouse"
    proc = orch(
        "build", "-f", str(recipe), "-o", str(out), "--plain", "--emulation", "auto",
        timeout=7200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (job,) = json.loads((out / ".orch" / "report.json").read_text())["jobs"]
    assert job["id"] == f"cp39-manylinux_2_36_{arch}" and job["status"] == "ok", job
    # the runtime image first; a stock image (bullseye's python3.9) too where one is built
    assert {v["status"] for v in job["verify"]} == {"passed"}, job["verify"]
    assert "-runtime:" in job["verify"][0]["image"]
    (wheel,) = out.glob("*.whl")
    assert "-cp39-cp39-" in wheel.name and f"manylinux_2_36_{arch}" in wheel_platforms(wheel.name)
    log = (out / ".orch" / "logs" / f"{job['id']}.log").read_text()
    assert "cp39 on bookworm 3.9.2 OpenSSL 3.0." in log
    audit = orch("audit", str(wheel))
    assert audit.returncode == 0, audit.stdout + audit.stderr


WHOLE_PROBE = r"""
import sys
gil = getattr(sys, "_is_gil_enabled", lambda: True)()  # before any extension could turn it on
import hashlib, importlib, json, os, socket, ssl, sysconfig, tempfile, threading
exec(os.environ["ORCH_PROBE"])  # the stdlib-extension and .pyc probe, printed as JSON first
names = ("_hashlib", "_uuid", "_dbm", "_gdbm", "_curses", "pyexpat", "_sqlite3", "_ctypes")
extra = {}
for name in names:
    try:
        importlib.import_module(name)
        extra[name] = "ok"
    except Exception as exc:
        extra[name] = repr(exc)
# a TLS 1.3 handshake with the image's OpenSSL, between two local sockets
tmp = tempfile.mkdtemp()
for name in ("cert", "key"):
    with open(os.path.join(tmp, name), "w") as fh:
        fh.write(os.environ["ORCH_TLS_" + name.upper()])
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(os.path.join(tmp, "cert"), os.path.join(tmp, "key"))
client = ssl.create_default_context(cafile=os.path.join(tmp, "cert"))
a, b = socket.socketpair()
def serve():
    with server.wrap_socket(b, server_side=True) as s:
        s.sendall(s.recv(5)[::-1])
thread = threading.Thread(target=serve)
thread.start()
with client.wrap_socket(a, server_hostname="localhost") as s:
    s.sendall(b"hello")
    echoed, tls = s.recv(5), s.version()
thread.join()
print(json.dumps({
    "extra": extra, "tls": [echoed.decode(), tls], "openssl": ssl.OPENSSL_VERSION,
    "scrypt": hashlib.scrypt(b"pw", salt=b"s", n=16, r=8, p=1).hex()[:8],
    "gil": gil, "abiflags": sys.abiflags, "version": sys.version.split()[0],
    "ft": sysconfig.get_config_var("Py_GIL_DISABLED") or 0,
}))
"""


def _tls_pair(tmp_path: Path) -> dict[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {"ORCH_TLS_CERT": cert.read_text(), "ORCH_TLS_KEY": key.read_text()}


@pytest.mark.parametrize(
    ("arch", "python"),
    [
        ("x86_64", "3.9"),
        pytest.param("ppc64le", "3.9", marks=pytest.mark.emulated),
        pytest.param("s390x", "3.9", marks=pytest.mark.emulated),
        pytest.param("ppc64le", "3.13t", marks=pytest.mark.emulated),
        pytest.param("s390x", "3.13t", marks=pytest.mark.emulated),
    ],
)
def test_bookworm_interpreter_is_whole(
    docker_engine: None, tmp_path: Path, arch: str, python: str
) -> None:
    """cp39 (bullseye's source) and cp313t on bookworm, as orch compiled them (accelerated
    where emulated): every stdlib extension a user needs imports (only _tkinter is not
    built, as everywhere), pip's TLS and hashes work with OpenSSL 3.0, the standard
    library's .pyc files are valid, and cp313t runs without the GIL."""
    built = orch(
        "images", "build-local", "--arch", arch, "--suite", "bookworm", "--python", python,
        timeout=7200,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    tag = "cp313-cp313t" if python == "3.13t" else "cp39-cp39"
    store = Path(os.environ["ORCH_INTERPRETER_DIR"]) / f"manylinux_2_36_{arch}"
    records = [json.loads(p.read_text()) for p in store.glob(f"{tag}-*.json")]
    assert records, f"no {tag} in {store}"
    if arch != "x86_64":
        assert any(r.get("accelerated") for r in records), records
    image = local_image_ref(arch, "runtime", "bookworm", (python,))
    env = {"ORCH_PROBE": PROBE, **_tls_pair(tmp_path)}
    proc = subprocess.run(
        ["docker", "run", "--rm", "--platform", archs.get(arch).platform,
         *(a for k in env for a in ("-e", k)), image,
         f"/opt/python/{tag}/bin/python", "-c", WHOLE_PROBE],
        capture_output=True, text=True, timeout=900, env={**os.environ, **env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, result = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert set(first["mods"].values()) | set(result["extra"].values()) == {"ok"}, (first, result)
    assert first["checked"] > 500 and first["bad"] == 0, first
    assert result["tls"] == ["olleh", "TLSv1.3"] and result["openssl"].startswith("OpenSSL 3.0.")
    assert len(result["scrypt"]) == 8
    free = python.endswith("t")
    assert (result["gil"], result["abiflags"], result["ft"]) == (
        (False, "t", 1) if free else (True, "", 0)
    ), result
    assert result["version"].startswith("3.13." if free else "3.9.2")
