"""Deterministic trace and span ids, so a restart or a second replica sends the same ids."""

from __future__ import annotations

import hashlib
import re

_XRAY_ROOT = re.compile(r"(?:^|;)\s*Root=1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})\s*(?:;|$)")
_XRAY_PARENT = re.compile(r"(?:^|;)\s*Parent=([0-9a-fA-F]{16})\s*(?:;|$)")


def _hash_int(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1  # zero is the invalid id in OpenTelemetry


def trace_id_for(execution_arn: str) -> int:
    """The 128-bit trace id of an execution's own trace."""
    return _hash_int(f"trace|{execution_arn}", 16)


def span_id_for(execution_arn: str, opening_event_id: int, role: str = "") -> int:
    """The 64-bit span id of the span opened by an event; `role` tells apart two spans one event opens."""
    return _hash_int(f"span|{execution_arn}|{opening_event_id}|{role}", 8)


def parse_xray_header(header: str | None) -> tuple[int, int | None] | None:
    """(trace id, parent span id or None) from an X-Ray trace header, or None if it has no Root."""
    if not header:
        return None
    root = _XRAY_ROOT.search(header)
    if root is None:
        return None
    trace_id = int(root.group(1) + root.group(2), 16)
    if trace_id == 0:
        return None
    parent = _XRAY_PARENT.search(header)
    parent_id = int(parent.group(1), 16) if parent else None
    return trace_id, (parent_id or None)
