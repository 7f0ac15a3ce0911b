"""JSON from the wire with explicit limits: size and nesting depth.

``json.loads`` recurses once per nesting level, so a body of 30,000 ``[``
raises ``RecursionError`` deep inside the parser (a 500, or worse). The depth
is measured first, in one pass over the bytes without recursion, and a
document nested deeper than ``max_depth`` is refused as :class:`JsonTooDeep`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DEFAULT_MAX_DEPTH", "JsonTooDeep", "loads_bounded", "nesting_depth"]

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


def loads_bounded(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting beyond ``max_depth`` (:class:`JsonTooDeep`).

    Other malformed input raises ``ValueError`` (or ``UnicodeDecodeError``) as
    ``json.loads`` does.
    """
    if nesting_depth(data) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth}")
    return json.loads(data)
