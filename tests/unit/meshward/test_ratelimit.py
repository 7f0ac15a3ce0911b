import pytest

from meshward.ratelimit import RateLimiter


def test_burst_then_rate_per_key() -> None:
    limiter = RateLimiter(2.0, 3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another key has its own bucket
    assert limiter.allow("a", 0.5) and not limiter.allow("a", 0.5)  # one token back
    assert [limiter.allow("a", 10.5) for _ in range(4)] == [True, True, True, False]  # ≤ burst


def test_forgets_the_least_recently_seen_keys() -> None:
    limiter = RateLimiter(1.0, 1, max_keys=2)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0) and limiter.allow("c", 0.0)
    assert limiter.allow("a", 0.0)  # "a" was forgotten: a fresh bucket
    assert not limiter.allow("c", 0.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_refuses_a_limit_that_allows_nothing(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate, burst)
