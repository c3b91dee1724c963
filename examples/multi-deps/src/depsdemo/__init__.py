"""orch example: five statically linked compression libraries, proven at import."""

from depsdemo._depsdemo import roundtrip, versions

VERSIONS = versions()

__all__ = ["VERSIONS", "roundtrip", "versions"]
