"""Who may use the PDP's admin HTTP API (``/v1/decisions/{id}``).

With ``pdp.admin_token`` (or ``pdp.admin_token_file``) set, a caller must send
``Authorization: Bearer <token>`` (compared in constant time, from any
address). Without one, only loopback callers that came straight to the socket
may: a request carrying ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP``
came through a proxy and is refused, as is every non-loopback address.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authz.authn.jwt import bearer_token
from meshward.callers import is_loopback_host, token_matches

__all__ = ["AdminGate"]

_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


class AdminGate:
    """Admits admin API callers; :meth:`refuse` is ``None`` for an admitted request."""

    def __init__(self, token: bytes | None) -> None:
        self._token = token or None

    def refuse(self, request: Request) -> Response | None:
        if self._token is not None:
            given = bearer_token(request.headers.get("authorization"))
            if given is not None and token_matches(self._token, given):
                return None
            return JSONResponse(
                {"error": "unauthenticated"},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="meshward-admin"'},
            )
        host = request.client.host if request.client else ""
        if is_loopback_host(host) and not any(h in request.headers for h in _PROXY_HEADERS):
            return None
        return JSONResponse(
            {
                "error": "forbidden: the admin API takes loopback callers unless pdp.admin_token"
                " is set"
            },
            status_code=403,
        )
