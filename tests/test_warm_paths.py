"""The warm path's shortcuts without an engine: which backend a restored build calls
directly (and the hook script really calling one, in a host Python), when the test
command does the import check, and the uv interpreter answers kept per image."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.pipeline.buildenv import DEFAULT_BACKEND, HOOK_SCRIPT, hook_backend, hook_env
from orchestrator.pipeline.verify import (
    UV_CACHE,
    WheelTags,
    _interpreter_bucket,
    _under_cache_dir,
    import_check_in_test,
    interpreter_entries,
    uv_venv_command,
)
from orchestrator.recipe.load import load_recipe
from orchestrator.recipe.model import ProjectSource, Recipe
from tests.conftest import EXAMPLES


def recipe_at(project: Path) -> Recipe:
    return Recipe(
        project / "orch.yaml", "demo", ProjectSource(project, "directory"), ("3.9",), (), ()
    )


def _backend(tmp_path: Path, pyproject: str | None) -> str | None:
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    return hook_backend(recipe_at(tmp_path))


def test_the_backend_a_restored_build_calls(tmp_path: Path) -> None:
    assert _backend(tmp_path, None) == DEFAULT_BACKEND  # no pyproject.toml: build's default
    assert _backend(tmp_path, "[project]\nname = 'x'\n") == DEFAULT_BACKEND
    named = '[build-system]\nrequires = ["flit_core"]\nbuild-backend = "flit_core.buildapi"\n'
    assert _backend(tmp_path, named) == "flit_core.buildapi"
    in_tree = named + 'backend-path = ["_custom"]\n'
    assert _backend(tmp_path, in_tree) is None  # only `build` checks where it was loaded from
    assert _backend(tmp_path, "[build-system\n") is None  # unreadable: `build` reports it


def test_the_hook_env_puts_the_environment_first_and_clears_pythonpath() -> None:
    env = hook_env({"PATH": "/usr/bin:/bin", "PYTHONPATH": "/elsewhere", "CFLAGS": "-O2"})
    assert env["PATH"] == "/tmp/orch-build-env/bin:/usr/bin:/bin"
    assert env["PYTHONPATH"] == "" and env["CFLAGS"] == "-O2"


BACKEND = """
import os
calls = []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    assert os.path.isabs(wheel_directory) and config_settings is None
    name = "demo-1.0-py3-none-any.whl"
    open(os.path.join(wheel_directory, name), "w").write(os.getcwd())
    return name
class Nested:
    class api:
        build_wheel = staticmethod(build_wheel)
class Broken:
    @staticmethod
    def build_wheel(*args):
        raise RuntimeError("the backend failed")
"""


def _run_hook(tmp_path: Path, backend: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "lib" / "demo_backend.py").write_text(BACKEND)
    (tmp_path / "hook").mkdir(exist_ok=True)
    (tmp_path / "hook" / "build_wheel.py").write_text(HOOK_SCRIPT)
    (tmp_path / "out").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(tmp_path / "hook" / "build_wheel.py"), backend, "out"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "lib")},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("backend", ["demo_backend", "demo_backend:Nested.api"])
def test_the_hook_script_calls_the_backend_in_the_project(tmp_path: Path, backend: str) -> None:
    proc = _run_hook(tmp_path, backend)
    assert proc.returncode == 0, proc.stderr
    assert "built out/demo-1.0-py3-none-any.whl" in proc.stdout
    assert (tmp_path / "out" / "demo-1.0-py3-none-any.whl").read_text() == str(tmp_path)


def test_a_failing_hook_fails_the_command(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    proc = _run_hook(tmp_path, "demo_backend:Broken")
    assert proc.returncode != 0 and "the backend failed" in proc.stderr
    assert not list((tmp_path / "out").iterdir())


def test_the_import_check_is_in_the_test_only_when_it_starts_with_those_imports() -> None:
    for example, module in (("hello-bz2", "bzdemo"), ("multi-deps", "depsdemo")):
        test = load_recipe(EXAMPLES / example / "orch.yaml").test
        assert test.imports == (module,) and import_check_in_test([module], test.command)
    assert import_check_in_test(["a", "b"], 'python -c "import a\nimport b; print(1)"')
    # another order, a module missing, something before the imports, or not `python -c`
    assert not import_check_in_test(["a", "b"], 'python -c "import b, a"')
    assert not import_check_in_test(["a", "b"], 'python -c "import a; print(1); import b"')
    assert not import_check_in_test(["a"], 'python -c "import os; import a"')
    assert not import_check_in_test(["a"], 'python -c "from a import f"')
    assert not import_check_in_test(["a"], 'python -c "import a as b"')
    assert not import_check_in_test(["a"], 'python -c "import a" && rm -rf x')
    assert not import_check_in_test(["a"], "pytest --pyargs a")
    assert not import_check_in_test(["a"], 'python -c "import a; (("')  # not Python
    assert not import_check_in_test(["a"], 'python -c "import a')  # not a shell word list
    assert not import_check_in_test(["a"], None)


def _tar(files: dict[str, bytes], mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo("orch-uv-cache")
        top.type, top.mtime = tarfile.DIRTYPE, mtime
        tar.addfile(top)
        for name, data in files.items():
            info = tarfile.TarInfo(f"orch-uv-cache/{name}")
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_only_uvs_interpreter_answers_are_kept_and_the_same_answers_make_the_same_bytes() -> None:
    files = {
        "interpreter-v5/ab/cd.msgpack": b"answer",
        "archive-v0/xyz/demo.py": b"an unpacked wheel",
        "CACHEDIR.TAG": b"tag",
    }
    kept = interpreter_entries(_tar(files, 1))
    with tarfile.open(fileobj=io.BytesIO(kept)) as tar:
        assert [m.name for m in tar.getmembers() if m.isfile()] == [
            "orch-uv-cache/interpreter-v5/ab/cd.msgpack"
        ]
    assert interpreter_entries(_tar(files, 2)) == kept  # times do not count
    assert interpreter_entries(_tar({"archive-v0/a": b"x"}, 1)) == b""  # nothing to keep


def test_only_uvs_newest_interpreter_bucket_is_copied_out_in_the_cache_dirs_shape() -> None:
    from orchestrator.errors import OrchError

    class Container:  # what the verification container's uv cache holds
        def __init__(self, **dirs: bytes) -> None:
            self.dirs = {f"{UV_CACHE}/{d}": tar for d, tar in dirs.items()}
            self.fetched: list[str] = []

        def get(self, path: str) -> bytes:
            if path not in self.dirs:
                raise OrchError(f"no such path {path}")
            self.fetched.append(path)
            return self.dirs[path]

    # a newer uv moved to v7; the seeded v4 bucket is still there beside it
    both = Container(**{"interpreter-v4": b"old", "interpreter-v7": b"new", "archive-v0": b"x"})
    assert _interpreter_bucket(both) == b"new"  # type: ignore[arg-type]
    assert both.fetched == [f"{UV_CACHE}/interpreter-v7"]  # one copy, of that bucket only
    assert _interpreter_bucket(Container(**{"archive-v0": b"x"})) is None  # type: ignore[arg-type]

    bucket = io.BytesIO()  # the engine's tar of the bucket alone: its name at the top
    with tarfile.open(fileobj=bucket, mode="w") as tar:
        info = tarfile.TarInfo("interpreter-v4/ab/cd.msgpack")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"new"))
    kept = interpreter_entries(_under_cache_dir(bucket.getvalue()))
    assert kept == interpreter_entries(_tar({"interpreter-v4/ab/cd.msgpack": b"new"}, 5))


def test_the_stock_venv_is_made_by_uv_from_the_images_own_python_only() -> None:
    uv = "/orch/native/uv-0.13.9/uv"
    plain = uv_venv_command(uv, WheelTags("cp39", ("manylinux_2_31_aarch64",), "cp39"))
    assert plain[:4] == [uv, "venv", "--python", "3.9"] and plain[-1] == "/orch/venv"
    assert "only-system" in plain and "--no-python-downloads" in plain
    assert "--cache-dir" in plain and "/tmp/orch-uv-cache" in plain  # the seeded answers
    free = uv_venv_command(uv, WheelTags("cp313", ("manylinux_2_31_x86_64",), "cp313t"))
    assert free[3] == "3.13t"
