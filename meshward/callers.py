"""Who is calling an admin endpoint: loopback addresses and shared admin tokens.

One implementation for the PDP's admin API, the console's login and bind
check: :func:`is_loopback_host` (a loopback IP, bracketed or not, or
``localhost``) and :func:`token_matches` (a constant-time comparison of the
SHA-256 of a given token with the configured one, so neither the length nor
a prefix of the secret leaks through timing).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

__all__ = ["is_loopback_host", "token_matches"]


def is_loopback_host(host: str) -> bool:
    """True for a loopback IP or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(expected: bytes, given: str) -> bool:
    """Constant-time comparison of an admin or login token (surrounding blanks ignored)."""
    return hmac.compare_digest(
        hashlib.sha256(expected).digest(), hashlib.sha256(given.strip().encode()).digest()
    )
