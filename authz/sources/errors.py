"""Errors raised by policy sources (drawn in :mod:`authz.errors`).

Every error carries a snake_case ``code`` that doubles as a metric label; its
message never holds a credential (URLs are redacted before they reach it).
"""

from __future__ import annotations

from authz.errors import CheckoutError, FetchError, Problem, Rejected, SourceError

__all__ = ["CheckoutError", "FetchError", "Problem", "Rejected", "SourceError"]
