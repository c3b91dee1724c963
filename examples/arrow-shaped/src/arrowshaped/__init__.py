"""Arrow-shaped orch example: every function of _core exercises one static library."""

from arrowshaped._core import roundtrips, selftest, versions

__all__ = ["roundtrips", "selftest", "versions"]
