"""Where orch's data directories (images/, recipes/) are: inside the installed package
(wheel builds force-include them) or, in a source checkout, at the repository root."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"orch's {name}/ directory is missing from the installation")
