"""orch example: proves at import that the wheel links libbz2 (grafted by auditwheel)."""

from bzdemo._bzdemo import compress, decompress, library_version

# Importing fails loudly if the grafted library is missing from the wheel.
LIBBZ2_VERSION = library_version()

__all__ = ["LIBBZ2_VERSION", "compress", "decompress", "library_version"]
