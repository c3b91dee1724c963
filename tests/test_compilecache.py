"""The compile cache and the native uv without an engine: ccache's identity per compiler,
the wrappers' PATH order, the per-job counts from ccache's log, and the kit's pieces."""

from __future__ import annotations

from pathlib import Path

from orchestrator.container.types import Mount, PathOverlay
from orchestrator.emulation.accel import Accel
from orchestrator.emulation.ccache_kit import PREFIX, CcacheKit, needed_libraries, wrapper_script
from orchestrator.pipeline.compilecache import compile_cache_for, parse_log
from orchestrator.pipeline.nativeuv import version_of
from orchestrator.pipeline.summary import compile_cache_line
from orchestrator.pipeline.verify import WheelTags, install_command, interpreter_script
from orchestrator.report import html
from orchestrator.report.record import JobResult, RunReport

KIT = CcacheKit(Path("/kit"), "4.2", "k" * 64)
IMAGE_PATH = "/usr/local/bin:/usr/bin:/bin"


def _accel(compiler: str, key: str) -> Accel:
    return Accel(
        arch="aarch64",
        triplet="aarch64-linux-gnu",
        root=Path("/root"),
        mounts=[Mount("/root", "/opt/orch-cross")],
        env={"PATH": "/opt/orch-cross/orch/bin", "CONFIG_SHELL": "/opt/orch-cross/usr/bin/dash"},
        image_path=IMAGE_PATH,
        gcc_version="10.2.1",
        package_version="10.2.1-6cross1",
        key=key,
        native_tools=True,
        compiler=compiler,
        clang_version="19.1.7" if compiler == "llvm" else "",
    )


def test_each_compiler_has_its_own_directory_and_identity() -> None:
    image = "sha256:" + "a" * 64
    caches = [
        compile_cache_for(KIT, "aarch64", image, _accel("gcc-cross", "1" * 64), True),
        compile_cache_for(KIT, "aarch64", image, _accel("llvm", "2" * 64), True),
        compile_cache_for(KIT, "aarch64", image, None, True),
        compile_cache_for(KIT, "x86_64", image, None, False),
        compile_cache_for(KIT, "aarch64", "sha256:" + "b" * 64, None, True),
    ]
    assert len({c.identity for c in caches}) == len(caches)
    assert len({c.host_dir for c in caches}) == len(caches)
    again = compile_cache_for(KIT, "aarch64", image, _accel("gcc-cross", "1" * 64), True)
    assert again.identity == caches[0].identity  # stable across runs: hits are possible


def test_ccache_wrappers_come_before_the_accelerators_and_ccache_skips_them() -> None:
    accel = _accel("gcc-cross", "1" * 64)
    cache = compile_cache_for(KIT, "aarch64", "sha256:" + "a" * 64, accel, True)
    overlay = cache.overlay(accel, IMAGE_PATH)
    env = overlay.apply({"PATH": f"/opt/python/cp39-cp39/bin:{IMAGE_PATH}"})
    dirs = env["PATH"].split(":")
    assert dirs[:3] == [
        f"{PREFIX}/wrappers/aarch64",
        accel.wrapper_dir,
        "/opt/python/cp39-cp39/bin",
    ]
    assert overlay.apply(env) == env  # idempotent: applied to the container, then commands
    assert f"{PREFIX}/wrappers" not in env["CCACHE_PATH"]
    assert env["CCACHE_PATH"].split(":")[0] == accel.wrapper_dir
    assert env["CONFIG_SHELL"] == accel.env["CONFIG_SHELL"]  # the accelerator's defaults kept
    assert env["CCACHE_COMPILERCHECK"] == f"string:{cache.identity}"
    plain = PathOverlay("/a:/b").apply({"PATH": "/b:/c:/a"})
    assert plain["PATH"] == "/a:/b:/c"


def test_counts_come_from_the_jobs_own_log() -> None:
    log = "\n".join(
        [
            "[2026-11-29T13:12:50.834139 9    ] Command line: gcc -c a.c",
            "[2026-11-29T13:12:50.834139 9    ] Result: cache miss",
            "[2026-11-29T13:12:50.925010 25   ] Result: cache hit (direct)",
            "[2026-11-29T13:12:51.000000 26   ] Result: cache hit (preprocessed)",
            "[2026-11-29T13:12:51.100000 27   ] Result: called for link",
        ]
    )
    stats = parse_log(log)
    assert (stats.hits, stats.misses, stats.uncacheable) == (2, 1, 1)
    assert parse_log("") == parse_log("no results here")


def test_kit_pieces() -> None:
    ldd = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibzstd.so.1 => /lib/x86_64-linux-gnu/libzstd.so.1 (0x00007f12)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f11)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f13)\n"
    )
    assert needed_libraries(ldd) == [
        "/lib/x86_64-linux-gnu/libzstd.so.1",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ]
    script = wrapper_script("aarch64-linux-gnu-g++")
    assert script.startswith("#!/bin/sh\n")
    assert f"{PREFIX}/lib/ld-linux-x86-64.so.2 --library-path {PREFIX}/lib" in script
    assert script.rstrip().endswith('ccache aarch64-linux-gnu-g++ "$@"')


def test_native_uv_version_and_install_command() -> None:
    assert version_of("uv-0.9.7-py3-none-manylinux_2_17_aarch64.whl") == "0.9.7"
    assert version_of("setuptools-80.9.0-py3-none-any.whl") is None
    assert install_command(None).startswith("python -m pip install")
    cmd = install_command("/orch/native/uv-0.9.7/uv")
    assert cmd.startswith("/orch/native/uv-0.9.7/uv pip install --python /orch/venv/bin/python")
    assert "--no-index --find-links /orch/wheels" in cmd


def test_a_venv_for_the_native_uv_skips_the_emulated_ensurepip() -> None:
    tags = WheelTags("cp311", ("manylinux_2_31_aarch64",), "cp311")
    assert "-m venv --without-pip /orch/venv" in interpreter_script("cp311-cp311", tags, False)
    assert "-m venv /orch/venv" in interpreter_script("cp311-cp311", tags)


def test_the_counts_reach_the_summary_and_the_html_details() -> None:
    def job(name: str, counts: dict[str, int]) -> JobResult:
        return JobResult(
            id=name,
            python="3.9",
            platform_tag="manylinux_2_31",
            arch="x86_64",
            policy="manylinux_2_31",
            image="img",
            emulated=False,
            compile_cache=counts,
        )

    report = RunReport(recipe="r", name="n")
    assert compile_cache_line(report) is None
    report.jobs = [
        job("a", {"hits": 3, "misses": 1, "uncacheable": 1}),
        job("b", {"hits": 4, "misses": 0, "uncacheable": 1}),
    ]
    assert compile_cache_line(report) == "compile cache: 7 hit(s), 1 miss(es) in 2 job(s)"
    facts = html._facts({"compile_cache": {"hits": 3, "misses": 1, "uncacheable": 1}})
    assert "compile cache" in facts and "3 hit(s), 1 miss(es), 1 not cacheable" in facts
    assert "compile cache" not in html._facts({})
