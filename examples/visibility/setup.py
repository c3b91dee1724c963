"""Builds visdemo._once in one of three flavours, chosen by the VISIBILITY environment variable.

VISIBILITY=hidden (the default): only PyInit__once leaves the shared object.
VISIBILITY=default: the compiler's default, which exports every weak std:: instantiation.
VISIBILITY=flags-only: -fvisibility=hidden without the version script; std:: instantiations
    still leak, because libstdc++ declares namespace std with default visibility.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
FLAVOURS = {
    "hidden": (
        ["-fvisibility=hidden", "-fvisibility-inlines-hidden"],
        # the version script keeps only the module's entry point global; --exclude-libs
        # hides whatever static libraries bring in
        [f"-Wl,--version-script={HERE / 'exports.map'}", "-Wl,--exclude-libs,ALL"],
    ),
    "default": ([], []),
    "flags-only": (["-fvisibility=hidden", "-fvisibility-inlines-hidden"], []),
}

flavour = os.environ.get("VISIBILITY", "hidden")
if flavour not in FLAVOURS:
    raise SystemExit(f"VISIBILITY must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
compile_flags, link_flags = FLAVOURS[flavour]

setup(
    ext_modules=[
        Extension(
            "visdemo._once",
            ["src/visdemo/_once.cpp"],
            language="c++",
            extra_compile_args=["-std=c++17", "-O2", *compile_flags],
            extra_link_args=link_flags,
        )
    ]
)
