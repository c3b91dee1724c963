"""The two outside tools the audit consults: `auditwheel show --json` and abi3audit.

Both run as subprocesses of the current interpreter: their command-line output is more stable
across releases than their internal Python APIs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT = 900  # seconds; auditwheel unpacks the wheel, large ones take a while


@dataclass(frozen=True)
class AuditwheelShow:
    overall_tag: str | None
    sym_tag: str | None
    versioned_symbols: dict[str, list[str]] = field(default_factory=dict)
    external_libs: dict[str, str | None] = field(default_factory=dict)
    unsupported_isa: bool = False
    policy_upgrades: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why no result: auditwheel missing, crashed, or refused


def run_auditwheel_show(wheel: Path) -> AuditwheelShow:
    if importlib.util.find_spec("auditwheel") is None:
        return AuditwheelShow(None, None, error="auditwheel is not installed")
    cmd = [sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return AuditwheelShow(None, None, error=f"auditwheel did not run: {exc}")
    data = _json_object(proc.stdout)
    if data is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return AuditwheelShow(None, None, error=f"auditwheel exited {proc.returncode}: {tail}")
    if "error" in data or "overall_tag" not in data:
        return AuditwheelShow(None, None, error=str(data.get("error", "no overall_tag")))
    return AuditwheelShow(
        overall_tag=str(data["overall_tag"]),
        sym_tag=str(data.get("sym_tag") or data["overall_tag"]),
        versioned_symbols={str(k): list(v) for k, v in data.get("versioned_symbols", {}).items()},
        external_libs={str(k): v for k, v in data.get("external_libs", {}).items()},
        unsupported_isa=bool(data.get("unsupported_isa", False)),
        policy_upgrades=dict(data.get("policy_upgrades", {})),
    )


def _json_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")  # tolerate stray lines before the document
    if start < 0:
        return None
    try:
        value = json.loads(text[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Abi3Object:
    name: str
    baseline: str
    computed: str
    non_abi3_symbols: tuple[str, ...]
    future_symbols: dict[str, str]  # symbol -> the Python version that added it to abi3


@dataclass(frozen=True)
class Abi3Report:
    objects: tuple[Abi3Object, ...]
    error: str | None = None


def abi3audit_available() -> bool:
    return importlib.util.find_spec("abi3audit") is not None


def run_abi3audit(wheel: Path) -> Abi3Report:
    with tempfile.TemporaryDirectory(prefix="orch-abi3-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "abi3audit", "--report", "-o", str(out), str(wheel)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Abi3Report((), error=f"abi3audit did not run: {exc}")
        data = _json_object(out.read_text()) if out.is_file() else None
    if data is None:
        tail = ((proc.stderr + proc.stdout).strip().splitlines() or ["no output"])[-1]
        return Abi3Report((), error=f"abi3audit exited {proc.returncode}: {tail}")
    return Abi3Report(tuple(_abi3_objects(data)))


def _abi3_objects(data: dict[str, Any]) -> list[Abi3Object]:
    out: list[Abi3Object] = []
    for spec in data.get("specs", {}).values():
        for entry in spec.get("wheel", []) if isinstance(spec, dict) else []:
            result = entry.get("result", {})
            out.append(
                Abi3Object(
                    name=str(entry.get("name", "?")),
                    baseline=str(result.get("baseline", "?")),
                    computed=str(result.get("computed", "?")),
                    non_abi3_symbols=tuple(str(s) for s in result.get("non_abi3_symbols", [])),
                    future_symbols={
                        str(k): str(v) for k, v in result.get("future_abi3_objects", {}).items()
                    },
                )
            )
    return out
