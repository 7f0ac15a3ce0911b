"""Stored values: round trip, and every malformed value is a CacheValueInvalid."""

from __future__ import annotations

import pytest

from authz.cache import CacheValueInvalid
from authz.cache.redis import CachedDecision, decode_value, encode_value, redact_url
from authz.engine.model import Decision, Effect


def test_round_trip() -> None:
    entry = CachedDecision(Decision(Effect.ALLOW, ("p1", "p2"), ("e",), "v9"), 1_700_000_000.0)
    assert decode_value(encode_value(entry)) == entry
    assert len(encode_value(entry)) < 128  # small values


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"f":"d0","e":"allow","r":[],"x":[],"v":"v","t":1}',
        b'{"f":"d1","e":"maybe","r":[],"x":[],"v":"v","t":1}',
        b'{"f":"d1","e":"allow","r":[1],"x":[],"v":"v","t":1}',
        b'{"f":"d1","e":"allow","r":[],"x":[],"v":"v","t":"soon"}',
        b'{"f":"d1","e":"allow","r":[],"x":[],"v":"v","t":Infinity}',
        b'{"f":"d1","e":"allow","r":[],"x":[],"v":"v"}',
        b"\xff\xfe",
    ],
)
def test_malformed_values(raw: bytes) -> None:
    with pytest.raises(CacheValueInvalid):
        decode_value(raw)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://pdp:s3cret@redis:6379/0", "redis://pdp:***@redis:6379/0"),
        ("rediss://:s3cret@redis/0", "rediss://:***@redis/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
