"""`orch audit`: what auditwheel never checks in a built wheel.

Exported C++ standard-library and third-party symbols, the C++ string ABI, symbol versions
named one by one, DT_NEEDED, RPATH, RECORD and the stable ABI, on wheels of any architecture.

Decisions worth knowing:
- A `linux_<arch>` tag (a wheel nobody repaired) is a `tag` error naming the manylinux tag
  auditwheel could give it; audit before repair with a downgrade such as
  `("tag", "info", "not repaired yet")`.
- Downgrades only lower a check's severity, and append the reason to every finding they touch.
- auditwheel computes the tag (`python -m auditwheel show --json`); when it gives no answer,
  orch's own reading of the ELF files and auditwheel's policy data is used instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model import CHECKS, AuditResult, Finding

if TYPE_CHECKING:
    from .audit import audit_wheel
    from .wheel import WheelError

_LAZY = {"audit_wheel": "audit", "WheelError": "wheel"}  # ELF readers: loaded on first use


def __getattr__(name: str) -> Any:
    """The checks (auditwheel, pyelftools) load when first used: `orch build` whose checks
    are reused, and `orch audit --help`, never need them."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = ["CHECKS", "AuditResult", "Finding", "WheelError", "audit_wheel"]
