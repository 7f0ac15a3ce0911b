"""The errors authentication raises (drawn in :mod:`authz.errors`).

Each carries a snake_case ``code`` saying why; it doubles as a metric label
and a log field (``authn:<code>``); callers only ever see a generic 401.
"""

from __future__ import annotations

from authz.errors import AuthnError, InvalidPeer, InvalidToken, KeySourceError, UnknownKey

__all__ = ["AuthnError", "InvalidPeer", "InvalidToken", "KeySourceError", "UnknownKey"]
