"""orch: build, repair and verify Python wheels with native code in manylinux containers.

The data flows one way, one module (or subpackage) per stage:

    recipe -> plan -> deps -> build -> repair -> verify/audit -> report

``engine`` is the only module that talks to the container engine.
"""

__version__ = "0.1.0"
