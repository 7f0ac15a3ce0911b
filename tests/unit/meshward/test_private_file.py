"""Secret files: owner-only from the start, replaced atomically, no leftovers on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from meshward.private_file import write_private_file


def test_written_owner_only_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "key.pem"
    write_private_file(path, b"secret")
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replaces_a_readable_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_private_file(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]
