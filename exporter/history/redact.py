"""Redaction of execution data by JSON path, before it is copied onto spans.

Paths are a JSONPath subset: `$`, `.key`, `['key']`, `[0]`, `[*]`, `.*` and `..key` (any depth)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

REDACTED = "[REDACTED]"

Step = tuple[str, Any]  # ("key", name) | ("index", n) | ("any", None) | ("deep", name)

_TOKEN = re.compile(
    r"""\.\.(?P<deep>[A-Za-z_$][\w$-]*)|\.(?P<key>[A-Za-z_$][\w$-]*)|\.\*|\[\*\]|\[(?P<index>\d+)\]|\[(?P<q>['"])(?P<quoted>.*?)(?P=q)\]"""
)


def parse_path(path: str) -> list[Step]:
    """The steps of a path; ValueError naming the first character that does not parse."""
    if not path.startswith("$"):
        raise ValueError(f"{path!r}: a path starts with $")
    steps: list[Step] = []
    position = 1
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"{path!r}: cannot parse at character {position + 1}: {path[position:]!r}")
        if match.group("deep") is not None:
            steps.append(("deep", match.group("deep")))
        elif match.group("key") is not None:
            steps.append(("key", match.group("key")))
        elif match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("quoted") is not None:
            steps.append(("key", match.group("quoted")))
        else:
            steps.append(("any", None))
        position = match.end()
    if not steps:
        raise ValueError(f"{path!r}: redacting the whole document: leave execution data out instead")
    return steps


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, list):
        return list(enumerate(node))
    return []


def _apply(node: Any, steps: Sequence[Step]) -> None:
    kind, arg = steps[0]
    rest = steps[1:]
    targets: list[Any] = []
    if (kind == "key" and isinstance(node, dict) and arg in node) or (
        kind == "index" and isinstance(node, list) and arg < len(node)
    ):
        targets = [arg]
    elif kind == "any":
        targets = [key for key, _ in _children(node)]
    elif kind == "deep":
        for _, child in _children(node):
            _apply(child, steps)  # deeper matches first, then this level
        if isinstance(node, dict) and arg in node:
            targets = [arg]
    for target in targets:
        if rest:
            _apply(node[target], rest)
        else:
            node[target] = REDACTED


def make_redactor(paths: Sequence[str]) -> Callable[[str], str] | None:
    """A function replacing the values at `paths` in a JSON text; None when there are no paths.

    Text that is not JSON (AWS truncates large payloads) cannot be redacted safely, so it is
    replaced as a whole."""
    compiled = [parse_path(path) for path in paths]
    if not compiled:
        return None

    def redact(text: str) -> str:
        try:
            document = json.loads(text)
        except ValueError:
            return REDACTED
        for steps in compiled:
            _apply(document, steps)
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    return redact
