"""Demo package for orch's exported-symbol audit: see examples/visibility/README.md."""

from ._once import greet

__all__ = ["greet"]
