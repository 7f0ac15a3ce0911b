"""Every error the certificate authority raises, rooted at :class:`CaError`.

Each error carries one snake_case ``code`` (a metric label and the ``error``
and ``code`` fields of an API response; the strings are part of the API) and
an HTTP ``status``; a refused CSR also names the failed check in ``reason``.
The message is for logs and operators, never echoed to a remote caller
beyond the code.

Errors::

    MeshwardError                (meshward.errors: the root of every component)
    └── CaError                  (.code, .status, .reason)
         ├── NotInitialized          no CA state in the state directory
         ├── AlreadyInitialized
         ├── AdminSvidError          no usable admin SVID on disk (`ca admin login` again)
         ├── AdminRequestFailed      an admin API call from the CLI failed
         ├── KeystoreError
         │    ├── MissingPassphrase
         │    ├── WrongPassphrase
         │    └── InsecureKeyFile     key file readable by group or others
         ├── BadRequest              malformed input (400)
         │    └── BadCsr             .reason: the CSR check that failed
         ├── AttestationFailed       the caller proved nothing (401)
         ├── NotEntitled             proven, but not to this identity / not admin (403)
         ├── NotFound                (404)
         ├── BodyTimeout             the request body did not arrive in time (408)
         ├── Conflict                (409)
         ├── RateLimited             (429)
         ├── IssuanceFailed          the CA could not sign or its own check failed (500)
         └── StoreError              the database behind the CA store
              ├── StoreUnavailable    cannot reach it right now (503; the caller retries)
              └── SchemaError         its schema does not fit this code (start-up refuses)
                   ├── SchemaTooNew   written by a newer meshward
                   └── SchemaMismatch a recorded migration differs from the code's
"""

from __future__ import annotations

from meshward.errors import MeshwardError

__all__ = [
    "AdminRequestFailed",
    "AdminSvidError",
    "AlreadyInitialized",
    "AttestationFailed",
    "BadCsr",
    "BadRequest",
    "BodyTimeout",
    "CaError",
    "Conflict",
    "InsecureKeyFile",
    "IssuanceFailed",
    "KeystoreError",
    "MissingPassphrase",
    "NotEntitled",
    "NotFound",
    "NotInitialized",
    "RateLimited",
    "SchemaError",
    "SchemaMismatch",
    "SchemaTooNew",
    "StoreError",
    "StoreUnavailable",
    "WrongPassphrase",
]


class CaError(MeshwardError):
    """Root of the CA's errors."""

    code = "ca_error"
    status = 500
    reason: str | None = None  # the failed check, for errors that name one (BadCsr)

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code.replace("_", " "))
        if code is not None:
            self.code = code


class NotInitialized(CaError):
    code = "not_initialized"


class AlreadyInitialized(CaError):
    code = "already_initialized"
    status = 409


class AdminSvidError(CaError):
    """No usable admin SVID; the message says why and what to run."""

    code = "no_admin_svid"
    status = 401


class AdminRequestFailed(CaError):
    """An admin API call from the CA host's CLI failed (unreachable, refused, no JSON)."""

    code = "admin_request_failed"
    status = 502


class KeystoreError(CaError):
    code = "keystore_error"


class MissingPassphrase(KeystoreError):
    code = "missing_passphrase"


class WrongPassphrase(KeystoreError):
    code = "wrong_passphrase"


class InsecureKeyFile(KeystoreError):
    code = "insecure_key_file"


class BadRequest(CaError):
    code = "bad_request"
    status = 400


class BadCsr(BadRequest):
    """A CSR was refused; ``reason`` names the check (e.g. ``weak_key``)."""

    code = "bad_csr"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or f"CSR refused: {reason.replace('_', ' ')}")
        self.reason = reason


class AttestationFailed(CaError):
    code = "attestation_failed"
    status = 401


class NotEntitled(CaError):
    code = "not_entitled"
    status = 403


class NotFound(CaError):
    code = "not_found"
    status = 404


class BodyTimeout(CaError):
    code = "body_timeout"
    status = 408


class Conflict(CaError):
    code = "conflict"
    status = 409


class RateLimited(CaError):
    code = "rate_limited"
    status = 429


class IssuanceFailed(CaError):
    code = "issuance_failed"
    status = 500


class StoreError(CaError):
    code = "store_error"
    status = 500


class StoreUnavailable(StoreError):
    code = "store_unavailable"
    status = 503


class SchemaError(StoreError):
    code = "schema_error"


class SchemaTooNew(SchemaError):
    code = "schema_too_new"


class SchemaMismatch(SchemaError):
    code = "schema_mismatch"
