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
    statements: list[Statement] = []
    first = -1
    for match in _CHUNK.finditer(text):
        chunk = match.group()
        if chunk.startswith("//"):
            continue
        if first < 0:
            first = match.start()
        if chunk == ";":
            statements.append(Statement(first, match.end(), text[first : match.end()], True))
            first = -1
    if first >= 0:
        end = len(text.rstrip())
        statements.append(Statement(first, end, text[first:end], False))
    return statements


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
