"""JSON from the wire with explicit limits: size and nesting depth.

``json.loads`` recurses once per nesting level, so a body of 30,000 ``[``
raises ``RecursionError`` deep inside the parser (a 500, or worse). A
document nested deeper than ``max_depth`` is refused as :class:`JsonTooDeep`,
whether or not it is otherwise well formed: the parser (C) runs first, and the
depth is measured on what it built (cheap: no Python loop over the bytes); only
a document it refuses is measured byte by byte, without recursion, to tell a
too-deep one from a malformed one.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DEFAULT_MAX_DEPTH", "JsonTooDeep", "loads_bounded", "nesting_depth", "value_depth"]

DEFAULT_MAX_DEPTH = 32
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")


class JsonTooDeep(ValueError):
    """The document nests arrays/objects deeper than allowed."""


def nesting_depth(data: bytes) -> int:
    """The deepest array/object nesting in ``data`` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def value_depth(value: Any) -> int:
    """The nesting of arrays/objects in a parsed JSON value (equals :func:`nesting_depth`)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in item if isinstance(child, dict | list))
    return deepest


def loads_bounded(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting beyond ``max_depth`` (:class:`JsonTooDeep`).

    Other malformed input raises ``ValueError`` (or ``UnicodeDecodeError``) as
    ``json.loads`` does.
    """
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        if nesting_depth(data) > max_depth:
            raise JsonTooDeep(f"JSON nested deeper than {max_depth}") from None
        raise
    if value_depth(value) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth}")
    return value
