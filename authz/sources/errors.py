"""Errors raised by policy sources.

Every error carries a short ``code`` that doubles as a metric label; its message
never holds a credential (URLs are redacted before they reach it).

Errors::

    SourceError
     ├── FetchError        the source could not be read (unreachable, not a repository, bad ref)
     └── CheckoutError     a fetched version could not be materialised on disk
"""

from __future__ import annotations

__all__ = ["CheckoutError", "FetchError", "SourceError"]


class SourceError(Exception):
    """Root of the errors raised by policy sources."""

    code = "source_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class FetchError(SourceError):
    """The source could not be read; the last good version stays active."""

    code = "fetch_failed"


class CheckoutError(SourceError):
    """A version was fetched but its files could not be written out."""

    code = "checkout_failed"
