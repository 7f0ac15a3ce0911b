"""The in-process tier: LRU bound and exact expiry."""

from __future__ import annotations

import pytest

from authz.cache.local import LocalTier


def test_expiry_is_exact_to_the_second() -> None:
    tier: LocalTier[str] = LocalTier(10)
    tier.put("k", "v", expires_at=100.0, now=50.0)
    assert tier.get("k", 99.0) == "v"
    assert tier.get("k", 100.0) is None
    assert len(tier) == 0


def test_least_recently_used_is_evicted() -> None:
    tier: LocalTier[int] = LocalTier(2)
    tier.put("a", 1, 100.0, 0.0)
    tier.put("b", 2, 100.0, 0.0)
    assert tier.get("a", 1.0) == 1  # a is now the most recent
    tier.put("c", 3, 100.0, 0.0)
    assert tier.get("b", 1.0) is None
    assert tier.get("a", 1.0) == 1
    assert tier.get("c", 1.0) == 3


def test_already_expired_and_zero_size_store_nothing() -> None:
    tier: LocalTier[int] = LocalTier(2)
    tier.put("a", 1, expires_at=5.0, now=5.0)
    assert len(tier) == 0
    off: LocalTier[int] = LocalTier(0)
    off.put("a", 1, 100.0, 0.0)
    assert off.get("a", 1.0) is None


def test_clear_and_bad_size() -> None:
    tier: LocalTier[int] = LocalTier(2)
    tier.put("a", 1, 100.0, 0.0)
    tier.clear()
    assert tier.get("a", 1.0) is None
    with pytest.raises(ValueError):
        LocalTier(-1)
