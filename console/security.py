"""The console's guards: security headers, CSRF tokens, and who may look.

- Every answer carries a strict Content-Security-Policy (scripts and styles
  only from the console itself, no inline script, no framing) and the usual
  hardening headers.
- Every POST needs a CSRF token bound to the browser's ``mw_csrf`` cookie
  (HMAC under a per-process key) and, when the browser sends one, an
  ``Origin`` equal to the console's own.
- On loopback the console is open to local users. Bound to any other address
  it requires a login with the admin token (``console.admin_token``): a
  signed, HttpOnly, SameSite=Strict session cookie with an expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from meshward.callers import is_loopback_host, token_matches

__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "SessionSigner",
    "csrf_token",
    "csrf_valid",
    "is_loopback_host",
    "token_matches",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}


def _mac(key: bytes, value: str) -> str:
    digest = hmac.new(key, value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_token(key: bytes, cookie: str) -> str:
    """The form token for a browser whose ``mw_csrf`` cookie is ``cookie``."""
    return _mac(key, "csrf:" + cookie)


def csrf_valid(key: bytes, cookie: str | None, token: str | None) -> bool:
    if not cookie or not token:
        return False
    return hmac.compare_digest(csrf_token(key, cookie), token)


class SessionSigner:
    """Signed login sessions: ``<expiry>.<nonce>.<mac>``, checked in constant time."""

    def __init__(
        self, key: bytes, lifetime_seconds: int, now: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self._lifetime = lifetime_seconds
        self._now = now

    def issue(self) -> str:
        body = f"{int(self._now()) + self._lifetime}.{secrets.token_urlsafe(16)}"
        return f"{body}.{_mac(self._key, 'session:' + body)}"

    def valid(self, value: str | None) -> bool:
        if not value or value.count(".") != 2:
            return False
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(_mac(self._key, "session:" + body), mac):
            return False
        expiry = body.split(".", 1)[0]
        return expiry.isdigit() and int(expiry) > self._now()
