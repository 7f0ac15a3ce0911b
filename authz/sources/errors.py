"""Errors raised by policy sources.

Every error carries a short ``code`` that doubles as a metric label; its message
never holds a credential (URLs are redacted before they reach it).

Errors::

    SourceError
     ├── FetchError        the source could not be read (unreachable, not a repository, bad ref)
     ├── CheckoutError     a fetched version could not be materialised on disk
     └── Rejected          a version failed the gate (``problems`` lists every error)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CheckoutError", "FetchError", "Problem", "Rejected", "SourceError"]


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


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One reason a version was refused, sortable by file, line and column."""

    file: str
    line: int
    column: int
    code: str
    message: str


class Rejected(SourceError):
    """A version failed the gate; ``problems`` holds every error, sorted."""

    code = "rejected"

    def __init__(self, problems: Iterable[Problem], *, stage: str, code: str | None = None) -> None:
        self.stage = stage  # "checkout", "bundle" (parse, schema) or "test"
        self.problems = tuple(sorted(problems))
        first = self.problems[0].message if self.problems else "rejected"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more, code=code)
