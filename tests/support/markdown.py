"""Markdown as the docs tests see it: links, heading anchors and fenced blocks.

Parsing is markdown-it's (CommonMark), so a link inside a code block is not a
link and a fence inside a list is still a fence. Anchors follow GitHub's rule:
lower-case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` … for
repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["Block", "Link", "anchors", "blocks", "links", "markdown_files", "slug"]

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", ".meshward", ".pytest_cache", ".mypy_cache"}
_md = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string split into words, its text, where it is."""

    source: Path
    line: int
    info: tuple[str, ...]
    text: str

    @property
    def language(self) -> str:
        return self.info[0] if self.info else ""

    @property
    def runnable(self) -> bool:
        return "runnable" in self.info[1:]

    def option(self, name: str, default: str = "") -> str:
        """The value of ``name=value`` in the info string."""
        for word in self.info[1:]:
            key, sep, value = word.partition("=")
            if sep and key == name:
                return value
        return default

    @property
    def id(self) -> str:
        return f"{self.source.name}:{self.line}"


def markdown_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*.md")
        if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(root).parts)
    )


def _tokens(path: Path) -> list[Token]:
    return _md.parse(path.read_text(encoding="utf-8"))


def _walk(tokens: list[Token]) -> Iterator[tuple[Token, int]]:
    line = 0
    for token in tokens:
        if token.map:
            line = token.map[0] + 1
        yield token, line
        if token.children:
            for child in token.children:
                yield child, line


def links(path: Path) -> list[Link]:
    out = []
    for token, line in _walk(_tokens(path)):
        if token.type == "link_open":
            out.append(Link(path, line, str(token.attrs.get("href", ""))))
        elif token.type == "image":
            out.append(Link(path, line, str(token.attrs.get("src", ""))))
    return out


def slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    tokens = _tokens(path)
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        inline = tokens[i + 1]
        text = "".join(
            child.content
            for child in (inline.children or [])
            if child.type in {"text", "code_inline"}
        )
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def blocks(path: Path) -> list[Block]:
    return [
        Block(
            path, (token.map[0] + 1) if token.map else 0, tuple(token.info.split()), token.content
        )
        for token in _tokens(path)
        if token.type == "fence"
    ]
