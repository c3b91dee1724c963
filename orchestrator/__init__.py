"""orch: build, repair and verify Python wheels with native code in manylinux containers.

The data flows one way, one module (or subpackage) per stage:

    recipe -> plan -> images -> deps -> (build -> repair -> audit -> verify -> land) -> report

``options`` reads the environment and the flags once; ``container.engine`` is the only
module that talks to the container engine, and ``container.factory`` the one way to a
container. ``pipeline.run`` is the run as a list of steps, ``pipeline.job`` one job's.
tests/test_architecture.py checks the layering.
"""

__version__ = "0.1.0"
