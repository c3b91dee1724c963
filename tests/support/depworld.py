"""A small world of static dependencies for integration tests: three generated libraries
(orchb requires orcha) served from 127.0.0.1, and a C extension project using them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support.run import orch
from tests.support.sourceserver import make_tarball, serve_directory, unused_port

MAKEFILE = """\
lib{n}.a: {n}.o
\tar rcs $@ $^
{n}.o: {n}.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c {n}.c -o $@
install: lib{n}.a
\tmkdir -p $(PREFIX)/lib $(PREFIX)/include
\tcp lib{n}.a $(PREFIX)/lib/ && cp {n}.h $(PREFIX)/include/
"""


def make_dep(srcdir: Path, n: str, value: str, requires: str = "") -> tuple[Path, str]:
    include = f'#include "{requires}.h"\n' if requires else ""
    body = f"{requires}_value() + {value}" if requires else value
    return make_tarball(
        srcdir,
        f"{n}-1.0",
        {
            "Makefile": MAKEFILE.format(n=n),
            f"{n}.h": f"int {n}_value(void);\n",
            f"{n}.c": f'{include}#include "{n}.h"\nint {n}_value(void) {{ return {body}; }}\n',
        },
    )


PROJECT_SETUP = """\
from setuptools import Extension, setup
setup(name="depuser", version="1.0", packages=[],
      ext_modules=[Extension("depuser", ["depuser.c"], libraries=["orchb", "orcha", "orchc"])])
"""
PROJECT_C = """\
#include <Python.h>
#include "orchb.h"
#include "orchc.h"
static PyObject *total(PyObject *s, PyObject *a) { return PyLong_FromLong(orchb_value() + orchc_value()); }
static PyMethodDef m[] = {{"total", total, METH_NOARGS, ""}, {0}};
static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "depuser", 0, -1, m};
PyMODINIT_FUNC PyInit_depuser(void) { return PyModule_Create(&d); }
"""


def dep_yaml(
    name: str,
    url: str,
    sha: str,
    requires: list[str],
    options: str = "[]",
    extra_urls: tuple[str, ...] = (),
) -> str:
    urls = json.dumps([*extra_urls, url])
    return textwrap.indent(
        textwrap.dedent(f"""\
        - name: {name}
          version: "1.0"
          source: {{url: {urls}, sha256: "{sha}"}}
          build: {{system: make, options: {options}}}
          requires: {json.dumps(requires)}
          exports: {{libs: [{name}]}}
        """),
        "  ",
    )


@pytest.fixture()
def world(tmp_path: Path, cache_dir: Path):  # type: ignore[no-untyped-def]
    """Three tiny libraries (orchb requires orcha) behind a local HTTP server, and a
    project using them."""
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    tarballs = {
        "orcha": make_dep(srv_dir, "orcha", "40"),
        "orchb": make_dep(srv_dir, "orchb", "2", requires="orcha"),
        "orchc": make_dep(srv_dir, "orchc", "100"),
    }
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "setup.py").write_text(PROJECT_SETUP)
    (proj / "depuser.c").write_text(PROJECT_C)
    with serve_directory(srv_dir) as base:
        yield tmp_path, base, tarballs, proj


def write_recipe(
    tmp_path: Path,
    base: str,
    tarballs: dict[str, tuple[Path, str]],
    b_options: str = "[]",
    mirrors: str = "",
    first_url_dead: bool = False,
    sha_override: dict[str, str] | None = None,
    python: str = '["3.9", "3.11"]',
) -> Path:
    dead = (f"http://127.0.0.1:{unused_port()}/gone.tar.gz",) if first_url_dead else ()
    sha = {n: (sha_override or {}).get(n, t[1]) for n, t in tarballs.items()}
    url = {n: f"{base}/{t[0].name}" for n, t in tarballs.items()}
    recipe = tmp_path / "orch.yaml"
    recipe.write_text(
        f"schema: 1\nproject: proj\npython: {python}\n"
        'test:\n  command: python -c "import depuser; assert depuser.total() == 142, depuser.total()"\n'
        + mirrors
        + "dependencies:\n"
        + dep_yaml("orcha", url["orcha"], sha["orcha"], [], extra_urls=dead)
        + dep_yaml("orchb", url["orchb"], sha["orchb"], ["orcha"], options=b_options)
        + dep_yaml("orchc", url["orchc"], sha["orchc"], [])
    )
    return recipe


def dep_status(report_dir: Path) -> dict[str, str]:
    report = json.loads((report_dir / ".orch" / "report.json").read_text())
    return {d["name"]: d["status"] for d in report["deps"]}


def build(recipe: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return orch("build", "-f", str(recipe), "-o", str(out), "--plain", *extra)
