"""The ``authz`` exception tree, drawn once.

Every error the policy decision point raises derives from :class:`AuthzError`
(itself a :class:`meshward.errors.MeshwardError`) and carries one snake_case
``code`` that doubles as a metric label and a log field. Third-party errors
(cedarpy, YAML, JSON, redis, gRPC) are translated at the boundary with
``raise ... from``. Callers show :attr:`AuthzError.public_message` (generic)
to remote clients and log ``str(error)`` (the detail).

::

    MeshwardError (meshward.errors)
    └── AuthzError                code "authz"
        ├── BundleError           code "bundle_invalid"   (.problems: every Problem found, sorted)
        ├── RequestError          code "bad_request"      (a request that cannot be mapped)
        │   └── MalformedRequest  code: why (ambiguous on the wire: a deny, "request:<code>")
        ├── PolicyTestError       code "policy_test"      (a test case that cannot run)
        ├── AuthnError            code: why ("authn:<code>"; callers only ever see a 401)
        │   ├── InvalidPeer       mTLS peer / XFCC / certificate chain rejected
        │   ├── InvalidToken      a bearer token was rejected
        │   │   └── UnknownKey    no key with the token's ``kid`` (yet)
        │   └── KeySourceError    a key set could not be read or fetched
        ├── PdpError              code "pdp_start"        (the PDP cannot start: exit 2)
        ├── SourceError           code "source_error"     (policy sources)
        │   ├── FetchError        code "fetch_failed"     (the last good version stays)
        │   ├── CheckoutError     code "checkout_failed"  (a version cannot be written out)
        │   ├── Rejected          code "rejected"         (failed the activation gate; .problems)
        │   └── PrepareFailed     code "prepare_failed"   (the checking process did not finish)
        │       ├── PrepareTimeout  code "prepare_timeout"
        │       ├── PrepareMemory   code "prepare_memory"
        │       ├── PrepareCrashed  code "prepare_crashed"
        │       └── PrepareBaseMismatch  code "prepare_base_mismatch" (asked again in full)
        ├── ReplayError           code "replay"           (a decision log cannot be replayed)
        │   └── BadLogEntry       code "bad_log_entry"    (one log line is not a decision)
        ├── CacheError            code "cache_error"      (never reaches a caller: a miss)
        │   ├── CacheUnavailable  code "unavailable"      (Redis timed out, refused, failed)
        │   └── CacheValueInvalid code "invalid_value"    (a stored value cannot be decoded)
        ├── TracingError          code "tracing"          (tracing asked for, ``otel`` missing)
        ├── ScaffoldError         code "scaffold"         (the target directory cannot be used)
        └── AskError              code "ask"              (a Check cannot be built or sent)

The cache codes and the ``authn:``/``request:`` codes are external contract
(metric labels, decision reasons): do not rename them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshward.errors import MeshwardError

__all__ = [
    "AskError",
    "AuthnError",
    "AuthzError",
    "BadLogEntry",
    "BundleError",
    "CacheError",
    "CacheUnavailable",
    "CacheValueInvalid",
    "CheckoutError",
    "FetchError",
    "InvalidPeer",
    "InvalidToken",
    "KeySourceError",
    "MalformedRequest",
    "PdpError",
    "PolicyTestError",
    "PrepareBaseMismatch",
    "PrepareCrashed",
    "PrepareFailed",
    "PrepareMemory",
    "PrepareTimeout",
    "Problem",
    "Rejected",
    "ReplayError",
    "RequestError",
    "ScaffoldError",
    "SourceError",
    "TracingError",
    "UnknownKey",
]


class AuthzError(MeshwardError):
    """The root of every error raised by :mod:`authz`."""

    code: str = "authz"
    public_message: str = "authorization error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


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

    code = "bundle_invalid"
    public_message = "the policy bundle is invalid"

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems))
        count = len(self.problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in policy bundle:\n{lines}")


class RequestError(AuthzError):
    """A request (JSON document, test case) cannot be turned into an AccessRequest."""

    code = "bad_request"
    public_message = "bad request"


class MalformedRequest(RequestError):
    """The request cannot be given one meaning: a deny. ``code`` says why (a metric label)."""

    def __init__(self, code: str) -> None:
        super().__init__(code, code=code)


class PolicyTestError(AuthzError):
    """A policy test case cannot be run (not a failure of the case: a broken case)."""

    code = "policy_test"
    public_message = "policy test error"


class AuthnError(AuthzError):
    """Root of authentication errors; ``code`` says why, ``detail`` is for the log."""

    code = "unauthenticated"
    public_message = "unauthenticated"

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code, code=code)
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


class PdpError(AuthzError):
    """The PDP cannot start: configuration, trust bundle or policies are unusable."""

    code = "pdp_start"
    public_message = "the PDP cannot start"


class SourceError(AuthzError):
    """Root of the errors raised by policy sources; messages never hold a credential."""

    code = "source_error"
    public_message = "policy source error"


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


class PrepareFailed(SourceError):
    """The check of one version in the checking process did not complete."""

    code = "prepare_failed"


class PrepareTimeout(PrepareFailed):
    """The check took longer than its time limit."""

    code = "prepare_timeout"


class PrepareMemory(PrepareFailed):
    """The check hit the checking process's memory cap."""

    code = "prepare_memory"


class PrepareCrashed(PrepareFailed):
    """The checking process died or answered garbage."""

    code = "prepare_crashed"


class PrepareBaseMismatch(PrepareFailed):
    """The child's answer names a piece the serving process does not hold.

    Never expected (:mod:`authz.sources.delta`); the caller asks again for a
    full answer.
    """

    code = "prepare_base_mismatch"


class ReplayError(AuthzError):
    """The decision log or the candidate policies cannot be read."""

    code = "replay"
    public_message = "replay error"


class BadLogEntry(ReplayError):
    """One decision log line is not a decision that can be evaluated again."""

    code = "bad_log_entry"


class CacheError(AuthzError):
    """Root of every decision-cache error; never reaches a caller (the decision is evaluated)."""

    code = "cache_error"


class CacheUnavailable(CacheError):
    """The shared tier failed: timeout, connection refused, cluster down, ..."""

    code = "unavailable"


class CacheValueInvalid(CacheError):
    """A stored value is not one this version of meshward wrote."""

    code = "invalid_value"


class TracingError(AuthzError):
    """Tracing was asked for but cannot run (a package of the ``otel`` extra is missing)."""

    code = "tracing"


class ScaffoldError(AuthzError):
    """The directory cannot take a new repository (it is not empty, or not writable)."""

    code = "scaffold"


class AskError(AuthzError):
    """The Check could not be built or sent (bad input, PDP unreachable)."""

    code = "ask"
