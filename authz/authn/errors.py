"""The errors authentication raises; each carries a short ``reason`` code.

The code doubles as a metric label and a log field; callers only ever see a
generic 401.

Errors (below :class:`authz.errors.AuthzError`)::

    AuthnError          code "unauthenticated"
     ├── InvalidPeer        mTLS peer / XFCC / certificate chain rejected
     ├── InvalidToken       a bearer token was rejected
     │    └── UnknownKey    no key with the token's ``kid`` (yet)
     └── KeySourceError     a key set could not be read or fetched
"""

from __future__ import annotations

from authz.errors import AuthzError

__all__ = ["AuthnError", "InvalidPeer", "InvalidToken", "KeySourceError", "UnknownKey"]


class AuthnError(AuthzError):
    """Root of authentication errors. ``reason`` is a machine-readable code."""

    code = "unauthenticated"
    public_message = "unauthenticated"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidPeer(AuthnError):
    """The mTLS peer, its certificate chain or a forwarded client cert is not acceptable."""


class InvalidToken(AuthnError):
    """A bearer token is malformed, mis-signed, expired or not meant for us."""


class UnknownKey(InvalidToken):
    """The token names a ``kid`` its issuer's key set does not (yet) hold."""

    def __init__(self, issuer: str, kid: str) -> None:
        super().__init__("unknown_kid", f"issuer {issuer[:200]!r} kid {kid[:100]!r}")
        self.issuer = issuer
        self.kid = kid


class KeySourceError(AuthnError):
    """A JWKS file or URL could not be read or parsed."""
