"""The extension links the static libraries orch built into its dependency prefix.

orch passes CPPFLAGS/LDFLAGS/PKG_CONFIG_PATH for the prefix, so nothing here names a
path. The prefix holds only static archives, so `-lbz2` etc. resolve to them (not to the
image's shared libbz2). Hidden visibility and --exclude-libs keep the libraries' symbols
out of the module's exports, and exports.map keeps std:: instantiations in: only
PyInit__depsdemo is exported (orch audit checks it).
"""

from pathlib import Path

from setuptools import Extension, setup

# -fvisibility=hidden alone leaves std:: template instantiations (e.g. std::to_string's
# helpers) exported as weak symbols: libstdc++ gives namespace std default visibility.
# The version script is what keeps the export list to the entry point.
EXPORTS = Path(__file__).resolve().parent / "exports.map"

setup(
    ext_modules=[
        Extension(
            "depsdemo._depsdemo",
            sources=["src/depsdemo/_depsdemo.cpp"],
            libraries=["snappy", "lz4", "lzma", "brotlienc", "brotlidec", "brotlicommon", "bz2"],
            language="c++",
            extra_compile_args=["-fvisibility=hidden", "-fvisibility-inlines-hidden", "-std=c++11"],
            extra_link_args=["-Wl,--exclude-libs,ALL", f"-Wl,--version-script={EXPORTS}"],
        )
    ]
)
