"""TrustBundleFile: re-read on change at most once per poll interval; last good bundle kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.authn.trust import TrustBundleFile
from authz.errors import KeySourceError
from meshward.clock import FixedClock
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle
from tests.support.tokens import SigningKey

TD = TrustDomain("meshward.local")


def _write(path: Path, *keys: SigningKey) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_bytes(
        SpiffeBundle(TD, (), {k.kid: k.private.public_key() for k in keys}).to_json()
    )
    staged.replace(path)


def _kids(source: TrustBundleFile) -> set[str]:
    bundle = source.current().get(TD)
    return set(bundle.jwt_keys) if bundle else set()


def test_reloads_on_change_after_the_poll_interval(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    one, two = SigningKey("k1"), SigningKey("k2")
    _write(path, one)
    clock = FixedClock()
    source = TrustBundleFile(path, clock, TD.name, poll_seconds=5)
    source.load()
    assert _kids(source) == {"k1"}
    _write(path, one, two)
    clock.advance(4)
    assert _kids(source) == {"k1"}
    clock.advance(1)
    assert _kids(source) == {"k1", "k2"}
    unchanged = source.current()
    clock.advance(5)
    assert source.current() is unchanged


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"keys": "x"}'])
def test_invalid_file_keeps_the_last_good_bundle(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bundle.json"
    _write(path, SigningKey("k1"))
    clock = FixedClock()
    source = TrustBundleFile(path, clock, TD.name, poll_seconds=1)
    source.load()
    path.write_bytes(content)
    clock.advance(1)
    assert _kids(source) == {"k1"}
    assert isinstance(source.last_error, KeySourceError)
    _write(path, SigningKey("k3"))
    clock.advance(1)
    assert _kids(source) == {"k3"}
    assert source.last_error is None


def test_missing_file_keeps_the_last_good_bundle(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    _write(path, SigningKey("k1"))
    clock = FixedClock()
    source = TrustBundleFile(path, clock, TD.name, poll_seconds=1)
    source.load()
    path.unlink()
    clock.advance(1)
    assert _kids(source) == {"k1"}
    assert source.last_error is not None
    assert source.last_error.code == "bundle_unreadable"


def test_first_load_must_succeed(tmp_path: Path) -> None:
    source = TrustBundleFile(tmp_path / "absent.json", FixedClock(), TD.name)
    with pytest.raises(KeySourceError):
        source.load()
