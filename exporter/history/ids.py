"""Deterministic trace and span ids, so a restart or a second replica sends the same ids."""

from __future__ import annotations

import hashlib
import re

_XRAY_ROOT = re.compile(r"(?:^|;)\s*Root=1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})\s*(?:;|$)")
_XRAY_PARENT = re.compile(r"(?:^|;)\s*Parent=([0-9a-fA-F]{16})\s*(?:;|$)")
_MASK64 = (1 << 64) - 1
# Which span an event opens: most events open one; a Parallel branch's first state opens two.
ROLES = {"": 0, "branch": 1, "execution": 2}


def _hash_int(text: str, size: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")


def _mix64(value: int) -> int:
    """SplitMix64's finaliser: a bijection on 64-bit integers that scatters neighbouring inputs."""
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK64
    return value ^ (value >> 31)


def trace_id_for(execution_arn: str) -> int:
    """The 128-bit trace id of an execution's own trace."""
    return _hash_int(f"trace|{execution_arn}", 16) or 1  # zero is OpenTelemetry's invalid id


class SpanIds:
    """Span ids of one execution: a hash of the ARN, mixed with (opening event id, role).

    Within one execution two different (event, role) pairs never share an id (the mixing is a
    bijection); only the one input that maps to zero is moved, since zero is the invalid id."""

    __slots__ = ("_base",)

    def __init__(self, execution_arn: str) -> None:
        self._base = _hash_int(f"span|{execution_arn}", 8)

    def span_id(self, opening_event_id: int, role: str = "") -> int:
        return (self._base ^ _mix64((opening_event_id * 4 + ROLES[role]) & _MASK64)) or self._base or 1


def span_id_for(execution_arn: str, opening_event_id: int, role: str = "") -> int:
    """The 64-bit span id of the span that an event opens; `role` tells apart two spans one event opens."""
    return SpanIds(execution_arn).span_id(opening_event_id, role)


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
