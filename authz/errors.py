"""The ``authz`` exception tree.

Every error the policy decision point raises derives from :class:`AuthzError`
and carries a short ``code`` that doubles as a metric label. Third-party
errors (cedarpy, YAML, JSON) are translated at the boundary with
``raise ... from``.

::

    AuthzError                    code "authz"
    ├── BundleError               code "bundle-invalid"   (.problems: every Problem found)
    ├── RequestError              code "bad-request"      (a request that cannot be mapped)
    │   └── MalformedRequest      code "malformed-request" (ambiguous on the wire: a deny;
    │                             authz.canonical, .reason)
    ├── PolicyTestError           code "policy-test"      (a test case that cannot run)
    ├── AuthnError                code "unauthenticated"  (authz.authn.errors: peer, token, keys)
    ├── PdpError                  code "pdp-start"        (authz.server: cannot start)
    ├── SourceError               policy sources (authz.sources.errors)
    │   ├── FetchError            the source cannot be read; the last good version stays
    │   ├── CheckoutError         a fetched version cannot be written out
    │   └── Rejected              a version failed the activation gate (.problems)
    └── ReplayError               a decision log cannot be replayed (authz.replay)

Other modules add their own subclasses below :class:`AuthzError`; add them to
this tree when you do.

Callers show :attr:`AuthzError.public_message` (generic) to remote clients and
log ``str(error)`` (the detail).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AuthzError",
    "BundleError",
    "PolicyTestError",
    "Problem",
    "RequestError",
]


class AuthzError(Exception):
    """The root of every error raised by :mod:`authz`."""

    code: str = "authz"
    public_message: str = "authorization error"


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with a policy bundle, at a position in a file.

    Ordered by (file, line, column, code, message) so a list of problems sorts
    the way a reader walks the files. ``line`` and ``column`` are 1-based.
    """

    file: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code}: {self.message}"


class BundleError(AuthzError):
    """A policy bundle could not be loaded; ``problems`` lists every reason, sorted."""

    code = "bundle-invalid"
    public_message = "the policy bundle is invalid"

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems))
        count = len(self.problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in policy bundle:\n{lines}")


class RequestError(AuthzError):
    """A request (JSON document, test case) cannot be turned into an AccessRequest."""

    code = "bad-request"
    public_message = "bad request"


class PolicyTestError(AuthzError):
    """A policy test case cannot be run (not a failure of the case: a broken case)."""

    code = "policy-test"
    public_message = "policy test error"
