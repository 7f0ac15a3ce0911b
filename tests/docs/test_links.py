"""Every relative link in every Markdown file resolves: the file exists, and so does the #anchor."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.cli import REPO
from tests.support.markdown import Link, anchors, links, markdown_files, slug

FILES = markdown_files(REPO)


def _relative_links() -> list[Link]:
    out = []
    for path in FILES:
        for link in links(path):
            parts = urlsplit(link.target)
            if parts.scheme or link.target.startswith("//"):
                continue  # external: not checked offline
            out.append(link)
    return out


LINKS = _relative_links()


def broken(link: Link) -> str | None:
    """Why ``link`` does not resolve, or ``None`` when it does."""
    parts = urlsplit(link.target)
    target = link.source if not parts.path else (link.source.parent / unquote(parts.path))
    target = target.resolve()
    if not target.is_relative_to(REPO):
        return "points outside the repository"
    if not target.exists():
        return "no such file"
    if parts.fragment:
        if target.is_dir() or target.suffix != ".md":
            return "anchor on a file that is not Markdown"
        if unquote(parts.fragment) not in anchors(target):
            return f"no heading #{parts.fragment} in {target.name}"
    return None


def test_docs_exist() -> None:
    names = {p.name for p in FILES}
    assert {"README.md", "architecture.md", "quickstart.md", "operations.md"} <= names


@pytest.mark.parametrize("link", LINKS, ids=[f"{lk.source.name}:{lk.line}" for lk in LINKS])
def test_relative_link_resolves(link: Link) -> None:
    assert broken(link) is None, f"{link.source}:{link.line}: {link.target}: {broken(link)}"


def test_checker_catches_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    page = REPO / "docs" / "README.md"
    assert broken(Link(page, 1, "no-such-page.md")) == "no such file"
    assert broken(Link(page, 1, "architecture.md#no-such-heading")) is not None
    assert broken(Link(page, 1, "architecture.md")) is None


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Data flow", "data-flow"),
        ("`meshward up` — all in one", "meshward-up--all-in-one"),
        ("Rotation (CA)", "rotation-ca"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_anchor_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
