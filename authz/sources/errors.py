"""Errors raised by policy sources.

Every error carries a short ``code`` that doubles as a metric label; its message
never holds a credential (URLs are redacted before they reach it).

Errors::

    AuthzError (authz.errors)
     └── SourceError
          ├── FetchError        the source cannot be read (unreachable, not a repository, no branch)
          ├── CheckoutError     a fetched version could not be materialised on disk
          └── Rejected          a version failed the gate (``problems`` lists every error)
"""

from __future__ import annotations

from collections.abc import Iterable

from authz.errors import AuthzError, Problem

__all__ = ["CheckoutError", "FetchError", "Problem", "Rejected", "SourceError"]


class SourceError(AuthzError):
    """Root of the errors raised by policy sources."""

    code = "source_error"
    public_message = "policy source error"

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


class Rejected(SourceError):
    """A version failed the gate; ``problems`` holds every error, sorted."""

    code = "rejected"

    def __init__(self, problems: Iterable[Problem], *, stage: str, code: str | None = None) -> None:
        self.stage = stage  # "checkout", "bundle" (parse, schema) or "test"
        self.problems = tuple(sorted(problems))
        first = self.problems[0].message if self.problems else "rejected"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more, code=code)
