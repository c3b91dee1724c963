"""The jobs each real project's recipe (examples/real/<name>/orch.yaml) must plan: every
Python the local images offer that the released sdist allows, each on the family whose
image carries it (cp314/cp315: Debian forky's, manylinux_2_39; the rest manylinux_2_31).

The sdists' facts the plan depends on, as read from the released files (the opt-in
e2e test plans the real sdists and compares with EXPECTED, so a wrong fact here fails):

- cffi 2.1.1: requires-python >=3.10, the Free Threading classifier; its setup.py refuses
  free-threaded 3.13, so the recipe does not list 3.13t.
- python-lz4 4.4.5: >=3.9, no classifier, Py_MOD_GIL_NOT_USED in each of its 4 modules.
- Pillow 13.0.0: >=3.11, no classifier, Py_MOD_GIL_NOT_USED in each of its 8 modules.
- PyYAML 6.0.4: >=3.10, no classifier, `# cython: freethreading_compatible = True` in
  its one module, yaml/_yaml.pyx.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHS = ("x86_64", "aarch64")
OLD_FAMILY = "manylinux_2_31"
FORKY = "manylinux_2_39"  # Debian forky's CPython 3.14 and 3.15


@dataclass(frozen=True)
class SdistFacts:
    requires_python: str
    classifier: bool  # 'Programming Language :: Python :: Free Threading :: ...'
    gil_sources: tuple[tuple[str, str], ...]  # (path in the sdist, text) of its modules
    old: tuple[str, ...]  # job prefixes on manylinux_2_31
    new: tuple[str, ...] = ("cp314", "cp315")  # on manylinux_2_39

    def expected(self) -> set[str]:
        return {
            f"{py}-{family}_{arch}"
            for arch in ARCHS
            for family, pys in ((OLD_FAMILY, self.old), (FORKY, self.new))
            for py in pys
        }


def _c_module(name: str) -> tuple[str, str]:
    text = (
        "static PyModuleDef_Slot slots[] = {{Py_mod_gil, Py_MOD_GIL_NOT_USED}, {0, NULL}};\n"
        f"PyMODINIT_FUNC PyInit_{name.rsplit('/', 1)[-1].removesuffix('.c')}(void) {{}}\n"
    )
    return name, text


FACTS = {
    "cffi": SdistFacts(">=3.10", True, (), ("cp311", "cp313")),
    "lz4": SdistFacts(
        ">=3.9",
        False,
        tuple(
            _c_module(f"lz4/{m}.c")
            for m in ("block/_block", "frame/_frame", "stream/_stream", "_version")
        ),
        ("cp39", "cp311", "cp313", "cp313t"),
    ),
    "pillow": SdistFacts(
        ">=3.11",
        False,
        tuple(_c_module(f"src/{m}.c") for m in ("_imaging", "_imagingft", "_webp")),
        ("cp311", "cp313", "cp313t"),
    ),
    "pyyaml": SdistFacts(
        ">=3.10",
        False,
        (("yaml/_yaml.pyx", "# cython: freethreading_compatible = True\nimport yaml\n"),),
        ("cp311", "cp313", "cp313t"),
    ),
}

EXPECTED = {name: facts.expected() for name, facts in FACTS.items()}
