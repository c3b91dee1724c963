"""Secrets out of everything orch prints or writes: one redaction function for URLs and
error text, and one for making build output safe to show on a terminal or in CI logs.

Every log line, report field, rendered report and GitHub annotation passes through
:func:`redact`; console and annotation text also through :func:`inert`.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://userinfo@host: a user:password pair or a bare token (https://TOKEN@host); up
# to the last "@" before the path, as a password may hold an unescaped one.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#'\"<>]+@")
# Query parameters that carry credentials or signatures (presigned URLs included).
_QUERY = re.compile(
    r"(?i)([?&;](?:token|access_token|refresh_token|id_token|sig|signature|password"
    r"|x-amz-[a-z0-9-]+|x-goog-[a-z0-9-]+)=)[^&\s'\"<>#]+"
)
# Credentials in header-like text ("Authorization: Basic abc", "Bearer <long token>");
# not "a basic understanding".
_AUTH_HEADER = re.compile(r"(?i)(\bauthorization:\s*\w+\s+)[^\s'\"]+|(\bbearer\s+)[\w.~+/=-]{16,}")

# Terminal escape sequences (CSI, OSC, other ESC forms) and C0/C1 controls but \t \n.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
)
# GitHub workflow commands are lines starting (after blanks) with "::".
_WORKFLOW_COMMAND = re.compile(r"(?m)^(\s*)(:|#)(:|#\[)")


def redact(text: str) -> str:
    """``text`` with URL credentials, token/signature query values and auth headers masked."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _QUERY.sub(rf"\1{MASK}", text)
    return _AUTH_HEADER.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)


def redact_tree(value: Any) -> Any:
    """A JSON-like value with :func:`redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value


def inert(text: str) -> str:
    """Build output fit for a console or a CI log: redacted, escape sequences and control
    characters removed, and workflow commands (``::cmd::``, legacy ``##[cmd]``) at line
    starts broken by a zero-width space, so a reader still sees what was printed."""
    text = _ESCAPES.sub("", redact(text))
    return _WORKFLOW_COMMAND.sub("\\1\\2\u200b\\3", text)
