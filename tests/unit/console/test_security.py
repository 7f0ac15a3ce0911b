from __future__ import annotations

from console.security import SessionSigner, csrf_token, csrf_valid, is_loopback_host

KEY = b"k" * 32


def test_csrf_token_is_bound_to_the_cookie() -> None:
    token = csrf_token(KEY, "cookie-a")
    assert csrf_valid(KEY, "cookie-a", token)
    assert not csrf_valid(KEY, "cookie-b", token)
    assert not csrf_valid(KEY, None, token)
    assert not csrf_valid(KEY, "cookie-a", None)
    assert not csrf_valid(b"other" * 8, "cookie-a", token)


def test_sessions_expire_and_cannot_be_forged() -> None:
    now = [1000.0]
    signer = SessionSigner(KEY, 60, lambda: now[0])
    session = signer.issue()
    assert signer.valid(session)
    expiry, nonce, mac = session.split(".")
    assert not signer.valid(f"{int(expiry) + 3600}.{nonce}.{mac}")
    assert not signer.valid("garbage")
    now[0] += 61
    assert not signer.valid(session)


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert is_loopback_host("localhost") and is_loopback_host("127.9.9.9")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("10.0.0.1")
    assert not is_loopback_host("example.com")
