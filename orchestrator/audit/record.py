"""RECORD integrity (hashes, sizes, completeness) and build leftovers in the wheel."""

from __future__ import annotations

import base64
import csv
import fnmatch
import hashlib
import io
import zipfile
from collections import Counter

from .model import ERROR, WARNING, Finding
from .wheel import Wheel

# Build residue that is never meant to ship (error), and files that usually are not (warning).
_STRAY_ERROR = (
    "*.o",
    "*.obj",
    "CMakeCache.txt",
    "*/CMakeCache.txt",
    "CMakeFiles/*",
    "*/CMakeFiles/*",
    ".git/*",
    "*/.git/*",
    "build/temp*",
    "*/build/temp*",
    "*.ninja_log",
    "*/.ninja_deps",
)
_STRAY_WARNING = ("*.a", "*/__pycache__/*.pyc", "__pycache__/*.pyc")
_WEAK_HASHES = frozenset({"md5", "sha1"})


def check_record(wheel: Wheel) -> list[Finding]:
    findings = _stray(wheel)
    record = wheel.record_path
    if record is None or record not in wheel.names:
        return [*findings, Finding("record", ERROR, "the wheel has no .dist-info/RECORD")]
    with zipfile.ZipFile(wheel.path) as zf:
        rows = _parse(zf.read(record).decode("utf-8", "replace"))
        problems = _compare(zf, wheel, rows, record)
    if problems:
        findings.insert(
            0,
            Finding(
                "record",
                ERROR,
                f"RECORD does not match the wheel's contents ({len(problems)} "
                "problem(s)): installers verify it and will refuse or mis-install",
                tuple(problems),
                record,
            ),
        )
    return findings


def _parse(text: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        path, digest, size = [*row, "", "", ""][:3]
        rows.append((path, digest, size))
    return rows


def _compare(
    zf: zipfile.ZipFile, wheel: Wheel, rows: list[tuple[str, str, str]], record: str
) -> list[str]:
    problems: list[str] = []
    names = [m.filename for m in wheel.members if not m.is_dir()]
    problems += [f"duplicate zip entry: {n}" for n, c in Counter(names).items() if c > 1]
    listed = {path for path, _, _ in rows}
    problems += [
        f"listed in RECORD but not in the wheel: {p}" for p in sorted(listed) if p not in names
    ]
    exempt = {record, f"{record}.jws", f"{record}.p7s"}
    problems += [
        f"not listed in RECORD: {n}"
        for n in sorted(set(names))
        if n not in listed and n not in exempt
    ]
    for path, digest, size in rows:
        if path in exempt or path not in names:
            continue
        problems += _verify(zf, path, digest, size)
    return problems


def _verify(zf: zipfile.ZipFile, path: str, digest: str, size: str) -> list[str]:
    algo, _, expected = digest.partition("=")
    if not expected:
        return [f"no hash recorded: {path}"]
    if algo in _WEAK_HASHES or algo not in hashlib.algorithms_guaranteed:
        return [f"unacceptable hash algorithm {algo!r}: {path}"]
    hasher = hashlib.new(algo)
    length = 0
    with zf.open(path) as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
            length += len(chunk)
    actual = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode()
    out: list[str] = []
    if actual != expected.rstrip("="):
        out.append(f"hash mismatch: {path} (RECORD {algo}={expected}, actual {algo}={actual})")
    if size and size != str(length):
        out.append(f"size mismatch: {path} (RECORD {size}, actual {length})")
    return out


def _stray(wheel: Wheel) -> list[Finding]:
    names = wheel.names
    errors = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in _STRAY_ERROR)]
    warnings = [
        n
        for n in names
        if n not in errors and any(fnmatch.fnmatchcase(n, p) for p in _STRAY_WARNING)
    ]
    out: list[Finding] = []
    if errors:
        out.append(Finding("record", ERROR, "build leftovers shipped in the wheel", tuple(errors)))
    if warnings:
        out.append(
            Finding(
                "record",
                WARNING,
                "files wheels rarely mean to ship (static archives, bytecode caches)",
                tuple(warnings),
            )
        )
    return out
