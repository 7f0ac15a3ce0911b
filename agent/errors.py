"""The node agent's exceptions; the whole tree is drawn in :mod:`agent`.

:class:`AgentError` sits under the shared root
:class:`~meshward.errors.MeshwardError`; every error carries a snake_case
``code`` usable as a metric label. The CA's own errors are
:mod:`ca.errors`; the agent never raises them, it raises
:class:`CaRequestFailed` when a call to the CA fails.
"""

from __future__ import annotations

from meshward.errors import MeshwardError

__all__ = [
    "AgentError",
    "CaRequestFailed",
    "CaRejected",
    "CaUnavailable",
    "FileWriteError",
    "PeerCredentialsError",
    "RateLimited",
]


class AgentError(MeshwardError):
    """Root of every error the node agent raises."""

    code = "agent_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CaRequestFailed(AgentError):
    """The CA could not give the agent what it asked for."""

    code = "ca_request_failed"


class CaUnavailable(CaRequestFailed):
    """Transient: the CA is unreachable, timed out, failed (5xx) or rate-limited us."""

    code = "ca_unavailable"


class CaRejected(CaRequestFailed):
    """The CA refused the request (4xx); retrying the same request will not help.

    ``status`` is the HTTP status the CA answered with.
    """

    code = "ca_rejected"

    def __init__(self, message: str, status: int, code: str | None = None) -> None:
        super().__init__(message, code)
        self.status = status


class PeerCredentialsError(AgentError):
    """The peer of a Unix-socket connection cannot be identified (no SO_PEERCRED)."""

    code = "peer_credentials"


class FileWriteError(AgentError):
    """File mode could not write (or hand over) its files."""

    code = "file_write"


class RateLimited(AgentError):
    """A workload asked for more than its share (the agent's own per-workload limit)."""

    code = "rate_limited"
