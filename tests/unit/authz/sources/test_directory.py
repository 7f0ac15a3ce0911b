from __future__ import annotations

from pathlib import Path

import pytest

from authz.errors import CheckoutError, FetchError
from authz.sources.directory import DirectorySource, content_version
from authz.sources.protocol import Pinnable, PolicySource, Pollable, Refreshable


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_version_is_a_content_hash_independent_of_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    files = {"p.cedar": "permit(principal, action, resource);", "tests/t.yaml": "cases: []"}
    _write(a, files)
    _write(b, files)
    _write(a, {".git/HEAD": "ignored", ".hidden": "ignored"})
    assert content_version(a) == content_version(b)
    assert content_version(a).startswith("sha256:")
    (b / "p.cedar").write_text("forbid(principal, action, resource);")
    assert content_version(a) != content_version(b)


def test_renaming_a_file_changes_the_version(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, {"x.cedar": "same"})
    _write(b, {"y.cedar": "same"})
    assert content_version(a) != content_version(b)


def test_latest_follows_changes_and_materialize_copies(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    _write(root, {"p.cedar": "one"})
    source = DirectorySource(root, poll_interval=0.5)
    first = source.latest()
    assert source.latest() == first
    _write(root, {"p.cedar": "two, longer"})
    second = source.latest()
    assert second.version != first.version
    dest = tmp_path / "copy"
    dest.mkdir()
    out = source.materialize(second, dest)
    assert (out / "p.cedar").read_text() == "two, longer"


def test_materialize_refuses_content_that_changed_since_latest(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    _write(root, {"p.cedar": "one"})
    source = DirectorySource(root)
    rev = source.latest()
    _write(root, {"p.cedar": "changed"})
    dest = tmp_path / "copy"
    dest.mkdir()
    with pytest.raises(CheckoutError) as info:
        source.materialize(rev, dest)
    assert info.value.code == "changed_during_read"


def test_missing_directory_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        DirectorySource(tmp_path / "nope").latest()
    assert info.value.code == "not_found"


def test_abilities() -> None:
    source = DirectorySource(Path("."))
    assert isinstance(source, PolicySource)
    assert isinstance(source, Pollable)
    assert not isinstance(source, Refreshable)
    assert not isinstance(source, Pinnable)
