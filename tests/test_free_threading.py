"""Free-threaded Pythons (3.13t): built only for a project that declares free-threading
support (its 'Programming Language :: Python :: Free Threading' classifier); otherwise
excluded in the plan with the reason, and a recipe that lists one explicitly is warned."""

from __future__ import annotations

import io
import tarfile
from io import StringIO
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from orchestrator.pipeline.images import BuiltLocalImages, Images, ImagesInputs
from orchestrator.plan.jobs import make_plan
from orchestrator.recipe import load_recipe
from orchestrator.recipe.model import ProjectSource
from orchestrator.recipe.requires_python import (
    RequiresPython,
    read_free_threading,
)
from orchestrator.report.progress import ProgressView

FT = "Classifier: Programming Language :: Python :: Free Threading :: 2 - Beta\n"


def _sdist(tmp_path: Path, classifiers: str) -> Path:
    path = tmp_path / "demo-1.0.tar.gz"
    pkg_info = f"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n{classifiers}\nbody\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {"demo-1.0/PKG-INFO": pkg_info, "demo-1.0/setup.py": ""}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _plan(tmp_path: Path, python: str):  # type: ignore[no-untyped-def]
    recipe = tmp_path / "orch.yaml"
    recipe.write_text(f"schema: 1\nproject: demo-1.0.tar.gz\npython: {python}\n")
    return make_plan(load_recipe(recipe), host_arch="x86_64")


def test_undeclared_free_threading_is_excluded_with_the_reason_and_a_warning(
    tmp_path: Path,
) -> None:
    _sdist(tmp_path, "Classifier: Programming Language :: Python :: 3.13\n")
    plan = _plan(tmp_path, "['3.13', '3.13t']")
    assert [j.id for j in plan.jobs] == ["cp313-manylinux_2_31_x86_64"]
    (ex,) = plan.excluded
    assert ex.id == "cp313t-manylinux_2_31_x86_64"
    assert "does not declare free-threading support" in ex.reason
    assert "demo-1.0.tar.gz:demo-1.0/PKG-INFO" in ex.reason
    (warning,) = plan.warnings
    assert "orch.yaml:3:" in warning and "3.13t" in warning and "remove it" in warning


def test_declared_free_threading_is_planned(tmp_path: Path) -> None:
    _sdist(tmp_path, FT)
    plan = _plan(tmp_path, "['3.13', '3.13t']")
    assert [j.id for j in plan.jobs] == [
        "cp313-manylinux_2_31_x86_64",
        "cp313t-manylinux_2_31_x86_64",
    ]
    assert plan.jobs[1].python_tag == "cp313-cp313t"
    assert plan.warnings == ()


def test_classifiers_from_pyproject_and_unknown_when_dynamic(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\n'
        'classifiers = ["Programming Language :: Python :: Free Threading :: 3 - Stable"]\n'
    )
    found = read_free_threading(ProjectSource(proj, "directory"))
    assert found is not None and found.declared == "3 - Stable"
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\ndynamic = ["classifiers"]\n'
    )
    assert read_free_threading(ProjectSource(proj, "directory")) is None  # nothing to go by


def test_requires_python_treats_free_threaded_as_its_version() -> None:
    # "3.13t" used to crash the check (InvalidVersion '3.13t.0').
    req = RequiresPython(">=3.10", "x")
    assert req.allows("3.13t")
    assert not RequiresPython("<3.13", "x").allows("3.13t")


def test_a_waiting_free_threaded_job_names_its_own_interpreter(tmp_path: Path) -> None:
    """The live view said "waiting: interpreter cp313" for a cp313t job (the ABI tag's
    first half): it names the job's Python as its id does."""
    _sdist(tmp_path, FT)
    plan = _plan(tmp_path, "['3.13t']")
    view = ProgressView(Console(file=StringIO()), live=False)
    inputs = ImagesInputs(plan, cast(Any, None), view, cast(Any, None), print, print)
    images = Images(inputs, BuiltLocalImages("plain"))
    (job,) = plan.jobs
    images._split[job.image] = True  # built here in steps: base, then its interpreter
    assert images.waiting_for(job, group_ready=True) == "interpreter cp313t (queued)"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


DECLARED_C = "static PyModuleDef_Slot s[] = {{Py_mod_gil, Py_MOD_GIL_NOT_USED}};\n"


def test_sources_declaring_the_gil_unused_count_as_the_declaration(tmp_path: Path) -> None:
    """Without a classifier, every extension module source declaring Py_MOD_GIL_NOT_USED
    (C) or freethreading_compatible (Cython) is the project saying it supports it; a
    helper file (no PyInit_), Cython's generated .c beside its .pyx, an `include`d .pyx
    and a build tree are not modules."""
    proj = _tree(
        tmp_path / "p",
        {
            "pyproject.toml": '[project]\nname = "p"\nversion = "1"\nclassifiers = []\n',
            "src/a.c": DECLARED_C + "PyMODINIT_FUNC PyInit_a(void) {}\n",
            "src/helper.c": "int helper(void) { return 1; }\n",
            "p/_fast.pyx": '# cython: freethreading_compatible = True\ninclude "part.pyx"\n',
            "p/part.pyx": "cdef int x = 1\n",
            "p/_fast.c": "PyMODINIT_FUNC PyInit__fast(void) {}  /* old Cython output */\n",
            "build/lib/old.c": "PyMODINIT_FUNC PyInit_old(void) {}\n",
        },
    )
    found = read_free_threading(ProjectSource(proj, "directory"))
    assert found is not None and found.declared
    assert "each of its 2 extension module source(s): p/_fast.pyx, src/a.c" in found.declared


def test_one_undeclared_module_is_no_declaration_and_is_named(tmp_path: Path) -> None:
    proj = _tree(
        tmp_path / "p",
        {
            "pyproject.toml": '[project]\nname = "p"\nversion = "1"\n',
            "src/a.c": DECLARED_C + "PyMODINIT_FUNC PyInit_a(void) {}\n",
            "src/b.cpp": "PyMODINIT_FUNC PyInit_b(void) {}\n",
            "p/_c.pyx": "# cython: language_level=3\n",
        },
    )
    found = read_free_threading(ProjectSource(proj, "directory"))
    assert found is not None and not found.declared
    reason = found.reason("3.13t")
    assert "2 of its 3 extension module source(s) do not declare" in reason
    assert "p/_c.pyx, src/b.cpp" in reason


def test_a_pure_python_project_without_classifier_is_not_declared(tmp_path: Path) -> None:
    _sdist(tmp_path, "Classifier: Programming Language :: Python :: 3.13\n")
    found = read_free_threading(ProjectSource(tmp_path / "demo-1.0.tar.gz", "sdist"))
    assert found is not None and not found.declared
    assert "demo-1.0.tar.gz: no extension module source found" in found.reason("3.13t")


def test_the_gil_probe_imports_the_modules_and_its_answer_is_read() -> None:
    """The probe runs in the wheel's free-threaded interpreter (the e2e tests); here: it
    imports exactly the modules before asking, and its answer is found among warnings."""
    import ast

    from orchestrator.pipeline.verify import GIL_MARK, gil_probe, gil_state

    body = ast.parse(gil_probe(["yaml", "yaml._yaml"])).body
    imported = [a.name for node in body if isinstance(node, ast.Import) for a in node.names]
    assert imported == ["sys", "yaml", "yaml._yaml"]
    assert "sys._is_gil_enabled()" in gil_probe(["x"])
    warned = [
        "<string>:1: RuntimeWarning: The global interpreter lock (GIL) has been enabled ...",
        f"{GIL_MARK} enabled",
    ]
    assert gil_state(warned) == "enabled"
    assert gil_state([f"{GIL_MARK} disabled"]) == "disabled"
    assert gil_state(["Traceback ...", "ModuleNotFoundError: No module named 'yaml'"]) == ""


CYTHON_C = """/* Generated by Cython 3.3.1 */
#ifdef CYTHON_FREETHREADING_COMPATIBLE
#if CYTHON_FREETHREADING_COMPATIBLE
#define __Pyx_FREETHREADING_COMPATIBLE Py_MOD_GIL_NOT_USED
#else
#define __Pyx_FREETHREADING_COMPATIBLE Py_MOD_GIL_USED
#endif
#else
#define __Pyx_FREETHREADING_COMPATIBLE {default}
#endif
PyMODINIT_FUNC PyInit_{name}(void) {{}}
"""


def test_cythons_output_without_its_pyx_counts_by_the_directives_default(
    tmp_path: Path,
) -> None:
    """Cython >= 3.2 writes Py_MOD_GIL_NOT_USED into every module's C (a user's macro may
    pick it): only the last definition, the directive's default, declares anything."""
    proj = _tree(
        tmp_path / "p",
        {
            "pyproject.toml": '[project]\nname = "p"\nversion = "1"\n',
            "p/yes.c": CYTHON_C.format(default="Py_MOD_GIL_NOT_USED", name="yes"),
            "p/no.c": CYTHON_C.format(default="Py_MOD_GIL_USED", name="no"),
        },
    )
    found = read_free_threading(ProjectSource(proj, "directory"))
    assert found is not None and not found.declared
    assert "1 of its 2 extension module source(s) do not declare" in found.reason("3.13t")
    assert "p/no.c" in found.reason("3.13t") and "p/yes.c" not in found.reason("3.13t")


def test_a_walk_cut_short_is_no_declaration(tmp_path: Path, monkeypatch: Any) -> None:
    from orchestrator.recipe import gil_sources

    monkeypatch.setattr(gil_sources, "MAX_FILES", 2)
    proj = _tree(
        tmp_path / "p",
        {
            "a.c": DECLARED_C + "PyMODINIT_FUNC PyInit_a(void) {}\n",
            "b.txt": "",
            "c.c": "PyMODINIT_FUNC PyInit_c(void) {}\n",
        },
    )
    found = gil_sources.scan_directory(proj)
    assert not found.declared
    assert "(the files past the first 2, not read)" in found.undeclared
