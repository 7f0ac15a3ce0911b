"""Several URLs for one service: parsing, DNS expansion, sticky order, backoff."""

from __future__ import annotations

import pytest

from meshward.endpoints import Endpoints, split_urls


def test_split_urls_accepts_lists_and_comma_lists() -> None:
    assert split_urls("https://a:1, https://b:2/") == ("https://a:1", "https://b:2")
    assert split_urls(["https://a:1", "https://b:2,https://a:1"]) == ("https://a:1", "https://b:2")
    for bad in ("", " , ", "ftp://a", "a:8443", "https://"):
        with pytest.raises(ValueError):
            split_urls(bad)


def test_a_name_with_several_addresses_is_several_endpoints() -> None:
    seen: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        seen.append((host, port))
        return ["10.0.0.1", "10.0.0.2", "10.0.0.1", "fd00::3"]

    ep = Endpoints(split_urls("https://ca.mesh:8443,https://10.9.9.9:8443"), True, resolve)
    assert ep.order() == [
        "https://10.0.0.1:8443",
        "https://10.0.0.2:8443",
        "https://[fd00::3]:8443",
        "https://10.9.9.9:8443",
    ]
    assert seen == [("ca.mesh", 8443)]  # an IP literal is not resolved
    assert Endpoints(("https://ca.mesh:8443",), False, resolve).order() == ["https://ca.mesh:8443"]


def test_unresolvable_name_is_kept_for_the_request_to_fail() -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    assert Endpoints(("https://nowhere:1",), True, resolve).order() == ["https://nowhere:1"]


def test_order_starts_at_the_one_that_worked() -> None:
    ep = Endpoints(("https://a", "https://b", "https://c"))
    assert ep.order() == ["https://a", "https://b", "https://c"]
    ep.worked("https://b")
    assert ep.order() == ["https://b", "https://c", "https://a"]


def test_backoff_is_exponential_jittered_and_capped() -> None:
    low = Endpoints(("https://a",), backoff_base=0.1, backoff_max=1.0, jitter=lambda: 0.0)
    high = Endpoints(("https://a",), backoff_base=0.1, backoff_max=1.0, jitter=lambda: 1.0)
    assert [low.delay(i) for i in range(3)] == [0.05, 0.1, 0.2]
    assert [high.delay(i) for i in range(3)] == [0.1, 0.2, 0.4]
    assert high.delay(10) == 1.0 and low.delay(100) == 0.5
