"""Cedar source text: tokens, statements and where an error is.

cedarpy reports parse errors without a position and stops at the first one.
This module splits a policy file into statements (one policy each, ending at
``;``) so every statement is parsed on its own — every error is found — and
finds the line and column of an error: for a syntax error, by searching for
the shortest prefix the parser rejects (Cedar's parser is LR, so a prefix it
does not reject is a viable prefix); otherwise at the first snippet the
message quotes, else at the statement's start. Pure functions, no I/O.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Position",
    "SourceMap",
    "Statement",
    "Token",
    "locate_error",
    "resplit_statements",
    "split_statements",
    "tokenize",
]

_TOKEN = re.compile(
    r"""//[^\n]*"""  # a comment (dropped)
    r"""|"(?:[^"\\\n]|\\.)*"?"""  # a string; unterminated ones end at the line's end
    r"""|[A-Za-z_][A-Za-z0-9_]*|[0-9]+"""
    r"""|::|==|!=|<=|>=|&&|\|\||\S"""
)
# What matters for splitting: comments, strings, ";" and runs of anything else.
_CHUNK = re.compile(r"""//[^\n]*|"(?:[^"\\\n]|\\.)*"?|;|[^\s"/;]+|/""")
_NEWLINE = re.compile("\n")
_QUOTED = re.compile(r"`([^`]+)`|resolve type: ([A-Za-z_][A-Za-z0-9_:]*)")
_SYNTAX_MARKERS = ("unexpected token", "invalid token", "unrecognized token")
_EOF_MARKERS = ("unexpected end of input",)


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Position:
    line: int
    column: int


class SourceMap:
    """Offsets to 1-based (line, column) in one text."""

    def __init__(self, text: str) -> None:
        self._starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]

    def position(self, offset: int) -> Position:
        index = bisect.bisect_right(self._starts, offset) - 1
        return Position(index + 1, offset - self._starts[index] + 1)


def tokenize(text: str) -> list[Token]:
    """Cedar tokens (policy or schema syntax), comments and whitespace dropped.

    Tolerant: an unterminated string runs to the end of its line, an unknown
    character is a one-character token; the parser reports what is wrong.
    """
    return [
        Token(m.start(), m.end(), m.group())
        for m in _TOKEN.finditer(text)
        if not m.group().startswith("//")
    ]


@dataclass(frozen=True, slots=True)
class Statement:
    """One policy's text: from its first token (annotations included) to its ``;``."""

    start: int
    end: int
    text: str
    terminated: bool


def split_statements(text: str) -> list[Statement]:
    """Split policy text at top-level ``;`` (``;`` cannot occur elsewhere in Cedar)."""
    return _split(text, 0, None)


def resplit_statements(old: str, old_statements: Sequence[Statement], text: str) -> list[Statement]:
    """``split_statements(text)``, given ``old_statements == split_statements(old)``.

    Only the part of ``text`` that differs from ``old`` is split again. A
    statement ending (at its ``;``) inside the text both share at the start
    is the same statement in both; scanning resumes after the last of those,
    and stops as soon as it ends a statement, inside the text both share at
    the end, where ``old`` ended one too: after a top-level ``;`` the split
    depends on what follows only, so the rest is ``old``'s, shifted.
    """
    if old == text:
        return list(old_statements)
    prefix = _common_prefix(old, text)
    suffix = _common_suffix(old, text, min(len(old), len(text)) - prefix)
    kept = 0
    while kept < len(old_statements) and old_statements[kept].end <= prefix:
        kept += 1
    while kept and not old_statements[kept - 1].terminated:
        kept -= 1  # an unterminated statement may go on in the new text
    start = old_statements[kept - 1].end if kept else 0
    shift = len(text) - len(old)
    ends = {st.end: i for i, st in enumerate(old_statements) if st.terminated}
    resync = (len(text) - suffix, shift, ends, old_statements)
    return [*old_statements[:kept], *_split(text, start, resync)]


_Resync = tuple[int, int, dict[int, int], Sequence[Statement]]


def _split(text: str, start: int, resync: _Resync | None) -> list[Statement]:
    statements: list[Statement] = []
    first = -1
    for match in _CHUNK.finditer(text, start):
        chunk = match.group()
        if chunk.startswith("//"):
            continue
        if first < 0:
            first = match.start()
        if chunk == ";":
            end = match.end()
            statements.append(Statement(first, end, text[first:end], True))
            first = -1
            if resync is not None and end > resync[0]:
                _, shift, ends, old = resync
                same = ends.get(end - shift)
                if same is not None:  # the same ";" ended a statement in the old text
                    statements.extend(
                        Statement(st.start + shift, st.end + shift, st.text, st.terminated)
                        for st in old[same + 1 :]
                    )
                    return statements
    if first >= 0:
        end = len(text.rstrip())
        statements.append(Statement(first, end, text[first:end], False))
    return statements


_BLOCK = 1 << 16


def _common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    limit = min(len(a), len(b))
    low = 0
    while low + _BLOCK <= limit and a[low : low + _BLOCK] == b[low : low + _BLOCK]:
        low += _BLOCK
    high = min(limit, low + _BLOCK)  # the answer is in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    """The length of the longest common suffix of ``a`` and ``b``, at most ``limit``."""
    low = 0
    while (
        low + _BLOCK <= limit
        and a[len(a) - low - _BLOCK : len(a) - low] == b[len(b) - low - _BLOCK : len(b) - low]
    ):
        low += _BLOCK
    high = min(limit, low + _BLOCK)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle : len(a) - low] == b[len(b) - middle : len(b) - low]:
            low = middle
        else:
            high = middle - 1
    return low


def _is_syntax(message: str) -> bool:
    return any(marker in message for marker in _SYNTAX_MARKERS)


def _rejects(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except ValueError as exc:
        return _is_syntax(str(exc))
    return False


def locate_error(
    text: str,
    message: str,
    parse: Callable[[str], object],
    *,
    skip: Sequence[str] = (),
) -> int:
    """The offset in ``text`` that ``message`` (an error from ``parse(text)``) is about.

    ``skip`` lists quoted snippets not worth pointing at (e.g. generated ids).
    """
    tokens = tokenize(text)
    if not tokens:
        return 0
    if any(marker in message for marker in _EOF_MARKERS):
        return tokens[-1].end
    if _is_syntax(message):
        found = _syntax_offset(text, tokens, message, parse)
        if found is not None:
            return found
    for groups in _QUOTED.findall(message):
        snippet = groups[0] or groups[1]
        if snippet in skip:
            continue
        found = _find_word(text, snippet)
        if found >= 0:
            return found
    return 0


def _syntax_offset(
    text: str, tokens: list[Token], message: str, parse: Callable[[str], object]
) -> int | None:
    quoted = _QUOTED.search(message)
    if quoted is not None and quoted.group(1):
        named = [t for t in tokens if t.text == quoted.group(1)]
        if len(named) == 1:
            return named[0].start
        for token in named:
            # Cedar's parser recovers and may report a later error for a truncated
            # text; removing the culprit, though, changes what it reports.
            if _message(parse, text[: token.start] + text[token.end :]) != message:
                return token.start
        if named:
            return named[0].start
    if _rejects(parse, text[: tokens[-1].end]):
        low, high = 1, len(tokens)
        while low < high:
            middle = (low + high) // 2
            if _rejects(parse, text[: tokens[middle - 1].end]):
                high = middle
            else:
                low = middle + 1
        return tokens[low - 1].start
    return None


def _message(parse: Callable[[str], object], text: str) -> str | None:
    try:
        parse(text)
    except ValueError as exc:
        return str(exc)
    return None


def _find_word(text: str, snippet: str) -> int:
    pattern = re.escape(snippet)
    if snippet[:1].isalnum() or snippet[:1] == "_":
        pattern = r"(?<![A-Za-z0-9_])" + pattern
    if snippet[-1:].isalnum() or snippet[-1:] == "_":
        pattern += r"(?![A-Za-z0-9_])"
    match = re.search(pattern, text)
    return match.start() if match else -1
