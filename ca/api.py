"""The CA's HTTPS API (FastAPI): thin mapping between HTTP and :mod:`ca.service`.

Who the caller is comes from the TLS layer: :mod:`ca.server` puts the
verified client certificate in the ASGI ``tls`` extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, leaf first), and
:func:`peer_spiffe_id` reads the SPIFFE ID from it. Bodies are parsed here
(size-capped) so that a malformed request is refused with a 4xx *and* an
audit line; error responses carry only the error code, never internals.

The issuance routes agents call all the time (``POST /v1/svid/x509``,
``/v1/svid/jwt``, ``/v1/agent/svid/x509``, ``/v1/agent/svid/jwt``,
``GET /v1/agent/entries``) are the same handlers as the FastAPI routes, but
:class:`HotRoutes` calls them straight from the ASGI entry point: FastAPI's
middleware, routing and dependency machinery cost more CPU than signing.
Everything else (including another method on those paths) goes to FastAPI.

Blocking work (the store, signing) runs on a small thread pool the server
owns, not one thread per request, except the issuance routes' work when the
server asks for it ``inline``: on a store whose calls take microseconds
(SQLite on local disk) an issuance runs on the event loop itself. Handing it
to a thread cost more CPU than the store calls it hides: each release of the
GIL (a SQLite statement, signing, reading the random device) woke a waiting
thread, so with 8 threads a fifth to a quarter of an issuance's CPU went on
passing the GIL around. Inline, the audit rows (and the takes from the
shared rate buckets of ``ca serve --workers N``) of the issuances of one
loop step go to the database in one transaction each
(:class:`ca.groupcommit.LoopBatch`). The same service calls run either way,
so the answers, the audit rows and the errors are the same (tested side by
side).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ca.errors import BadRequest, BodyTimeout, CaError, NotFound, StoreUnavailable
from ca.issuance import IssuedX509
from ca.pipeline import rate_decided
from ca.replicas import DbRateLimiter, LoopRates
from ca.service import Caller, CertificateAuthority
from ca.status import ca_status, live_svids
from ca.store.protocol import BatchCallerRates, Entry
from meshward.asgi import BodyTooLarge, read_body
from meshward.clock import rfc3339
from meshward.jsonbody import JsonTooDeep, loads_bounded
from meshward.metrics import render
from meshward.spiffe import InvalidSpiffeId, SpiffeId
from meshward.x509_svid import is_ca, spiffe_id_of

__all__ = ["MAX_BODY", "MAX_JSON_DEPTH", "HotRoutes", "create_app", "peer_spiffe_id"]

log = logging.getLogger("meshward.ca.api")
T = TypeVar("T")
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_JSON_DEPTH = 16  # nesting of a request body (the deepest valid one has 2)


Leaf = tuple[dt.datetime, dt.datetime, SpiffeId]


def peer_spiffe_id(
    scope: MutableMapping[str, Any],
    now: dt.datetime,
    parse: Callable[[str], Leaf | None] | None = None,
) -> SpiffeId | None:
    """The SPIFFE ID of the verified client certificate, if the caller sent one.

    OpenSSL checked the certificate at the handshake; a keep-alive connection
    can outlive it, so its validity is checked again against ``now``.
    ``parse`` (default :func:`parse_leaf`) may be a cached version of it.
    """
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    parsed = (parse or parse_leaf)(chain[0])
    if parsed is None:
        return None
    not_before, not_after, spiffe_id = parsed
    if not not_before <= now < not_after:
        return None
    return spiffe_id


def parse_leaf(pem: str) -> Leaf | None:
    """A client certificate's validity and SPIFFE ID (None: a CA or no valid SPIFFE ID)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        if is_ca(cert):
            return None
        return cert.not_valid_before_utc, cert.not_valid_after_utc, spiffe_id_of(cert)
    except ValueError:  # InvalidSvid included
        return None


def _error(exc: CaError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.code, "code": exc.code}
    reason = exc.reason
    if reason:
        body["reason"] = reason
    headers: dict[str, str] | None = None
    if isinstance(exc, BodyTimeout):
        # A body that never arrived leaves the connection unusable: close it, hold nothing.
        headers = {"connection": "close"}
    elif isinstance(exc, StoreUnavailable):
        headers = {"Retry-After": "1"}
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _read(request: Request, timeout: float) -> bytes:
    try:
        return await read_body(request, MAX_BODY, timeout)
    except BodyTooLarge as exc:
        raise BadRequest("request body too large", code="body_too_large") from exc
    except TimeoutError as exc:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from exc


async def _body(request: Request, timeout: float) -> dict[str, Any]:
    data = await _read(request, timeout)
    try:
        value = loads_bounded(data, MAX_JSON_DEPTH)
    except JsonTooDeep as exc:
        raise BadRequest("request body nests too deep", code="json_too_deep") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("request body is not JSON", code="bad_json") from exc
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object", code="bad_json")
    return value


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", code=f"bad_{name}")
    return value


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadRequest(f"{name} must be an integer", code=f"bad_{name}")
    return value


def _spiffe_id(body: dict[str, Any]) -> SpiffeId:
    try:
        return SpiffeId.parse(body.get("spiffe_id"))  # type: ignore[arg-type]
    except InvalidSpiffeId as exc:
        raise BadRequest("spiffe_id is not a valid SPIFFE ID", code="bad_spiffe_id") from exc


def _entry_from(body: dict[str, Any], entry_id: str) -> Entry:
    selectors = body.get("selectors", [])
    dns = body.get("dns_names", [])
    if not isinstance(selectors, list) or not all(isinstance(s, str) and s for s in selectors):
        raise BadRequest("selectors must be a list of strings", code="bad_selectors")
    if not isinstance(dns, list) or not all(isinstance(d, str) and d for d in dns):
        raise BadRequest("dns_names must be a list of strings", code="bad_dns_names")
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise BadRequest("admin must be a boolean", code="bad_admin")
    return Entry(
        id=entry_id,
        spiffe_id=_spiffe_id(body),
        selectors=frozenset(selectors),
        x509_ttl=_opt_int(body, "x509_ttl"),
        jwt_ttl=_opt_int(body, "jwt_ttl"),
        dns_names=tuple(dns),
        admin=admin,
    )


Handler = Callable[[Request], Awaitable[Response]]


@functools.lru_cache(maxsize=64)
def _issuer_pem(chain: tuple[x509.Certificate, ...]) -> bytes:
    """The signing CA's part of a chain as PEM (the same for every SVID it signs)."""
    return b"".join(c.public_bytes(Encoding.PEM) for c in chain)


def _x509_response(issued: IssuedX509) -> JSONResponse:
    leaf, *issuers = issued.chain
    pem = (leaf.public_bytes(Encoding.PEM) + _issuer_pem(tuple(issuers))).decode("ascii")
    return JSONResponse(
        {
            "spiffe_id": str(issued.spiffe_id),
            "svid": pem,
            "expires_at": rfc3339(issued.not_after),
        }
    )


class HotRoutes:
    """An ASGI app: ``routes`` (method, path) are called directly; the rest goes to ``app``."""

    def __init__(self, app: FastAPI, routes: Mapping[tuple[str, str], Handler]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.routes.get((scope["method"], scope["path"]))
            if handler is not None:
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(  # noqa: PLR0915 (one route each)
    ca: CertificateAuthority, executor: Executor | None = None, inline: bool = False
) -> HotRoutes:
    """The ASGI application serving ``ca``; blocking work runs on ``executor``.

    ``executor`` None is the event loop's default thread pool. ``inline``: the
    issuance routes call the CA on the event loop (for a store that never
    waits on a network; an admin action still runs on ``executor``).
    """
    app = FastAPI(title="meshward CA", docs_url=None, redoc_url=None, openapi_url=None)

    # A keep-alive connection sends the same certificate with every request: it is
    # parsed once, and only its validity is checked again each time.
    leaf = functools.lru_cache(maxsize=1024)(parse_leaf)

    def _caller(request: Request) -> Caller:
        client = request.client
        peer = peer_spiffe_id(request.scope, ca.clock.now(), leaf)
        return Caller(peer, client.host if client else "unknown")

    async def json_body(request: Request) -> dict[str, Any]:
        return await _body(request, ca.settings.body_timeout)

    async def run(func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, func)

    rates = None
    if inline and isinstance(ca.limiter, DbRateLimiter) and isinstance(ca.store, BatchCallerRates):
        rates = LoopRates(ca.limiter, ca.store)

    async def run_hot(func: Callable[[], T], rate_key: Caller | None = None) -> T:
        """An issuance route's work: on the event loop when ``inline``, else as :func:`run`.

        Inline, the shared rate bucket of ``rate_key`` (the caller of an action
        the pipeline rate-limits) is asked with those of the same loop step,
        and the audit rows are stored with those of the same loop step (one
        transaction each) before this returns or raises: no answer before its row.
        """
        if not inline:
            return await asyncio.get_running_loop().run_in_executor(executor, func)
        decision: bool | BaseException | None = None
        if rates is not None and rate_key is not None:
            try:
                decision = await rates.allow(str(rate_key))
            except Exception as exc:  # raised where the pipeline asks: audited as ever
                decision = exc
        with contextlib.ExitStack() as stack:
            if decision is not None:
                stack.enter_context(rate_decided(decision))
            rows = stack.enter_context(ca.auditor.deferred())
            try:
                result = func()
            except BaseException:
                await ca.auditor.store_deferred(rows)
                raise
        await ca.auditor.store_deferred(rows)
        return result

    def guarded(action: str, hot: bool = False) -> Callable[[Handler], Handler]:
        """Map CA errors to responses; audit refusals that happen before the service."""
        audit_run = run_hot if hot else run

        def wrap(handler: Handler) -> Handler:
            async def inner(request: Request) -> Response:
                try:
                    return await handler(request)
                except CaError as exc:
                    if not ca.was_audited(exc) and not isinstance(exc, StoreUnavailable):
                        error = exc
                        await audit_run(lambda: ca.audit_refusal(action, _caller(request), error))
                    return _error(exc)
                except ClientDisconnect:
                    # The caller went away mid-body: nothing to answer, nothing went wrong here.
                    log.debug("client disconnected before its request body was read")
                    return Response(status_code=499)
                except Exception:
                    log.exception("CA API internal error")
                    return JSONResponse({"error": "internal"}, status_code=500)

            return inner

        return wrap

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        # With ``ca serve --workers N``: the sum over the workers.
        return Response(render(ca.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/bundle")
    async def bundle() -> Response:
        return Response(ca.authority.bundle().to_json(), media_type="application/json")

    @app.get("/v1/bundle.pem")
    async def bundle_pem() -> Response:
        return PlainTextResponse(ca.authority.bundle().to_pem().decode("ascii"))

    @app.post("/v1/svid/x509")
    @guarded("x509_svid", hot=True)
    async def svid_x509(request: Request) -> Response:
        body = await json_body(request)
        csr = body.get("csr")
        if not isinstance(csr, str):
            raise BadRequest("csr must be a PEM string", code="bad_csr")
        token, ttl, caller = _opt_str(body, "token"), _opt_int(body, "ttl"), _caller(request)
        issued = await run_hot(lambda: ca.issue_x509(csr, token, caller, ttl), caller)
        return _x509_response(issued)

    @app.post("/v1/svid/jwt")
    @guarded("jwt_svid", hot=True)
    async def svid_jwt(request: Request) -> Response:
        body = await json_body(request)
        audience = body.get("audience")
        token, ttl, caller = _opt_str(body, "token"), _opt_int(body, "ttl"), _caller(request)
        issued = await run_hot(lambda: ca.issue_jwt(audience, token, caller, ttl), caller)
        return JSONResponse({"token": issued.token, "expires_at": rfc3339(issued.expires_at)})

    @app.get("/v1/agent/entries")
    @guarded("agent_entries", hot=True)
    async def agent_entries(request: Request) -> Response:
        caller = _caller(request)
        entries = await run_hot(lambda: ca.agent_entries(caller))
        return JSONResponse({"entries": [e.to_json() for e in entries]})

    @app.post("/v1/agent/svid/x509")
    @guarded("x509_svid", hot=True)
    async def agent_svid_x509(request: Request) -> Response:
        body = await json_body(request)
        csr = body.get("csr")
        if not isinstance(csr, str):
            raise BadRequest("csr must be a PEM string", code="bad_csr")
        caller = _caller(request)
        issued = await run_hot(
            lambda: ca.agent_issue_x509(csr, body.get("entry_id"), caller), caller
        )
        return _x509_response(issued)

    @app.post("/v1/agent/svid/jwt")
    @guarded("jwt_svid", hot=True)
    async def agent_svid_jwt(request: Request) -> Response:
        body = await json_body(request)
        caller = _caller(request)
        issued = await run_hot(
            lambda: ca.agent_issue_jwt(body.get("entry_id"), body.get("audience"), caller),
            caller,
        )
        return JSONResponse({"token": issued.token, "expires_at": rfc3339(issued.expires_at)})

    async def admin(request: Request) -> Caller:
        caller = _caller(request)
        await run(lambda: ca.require_admin(caller))
        return caller

    @app.get("/v1/entries")
    @guarded("entry_list")
    async def list_entries(request: Request) -> Response:
        caller = await admin(request)
        entries = await run(lambda: ca.list_entries(caller))
        return JSONResponse({"entries": [e.to_json() for e in entries]})

    @app.post("/v1/entries")
    @guarded("entry_add")
    async def add_entry(request: Request) -> Response:
        caller = await admin(request)
        entry = _entry_from(await json_body(request), ca.new_entry_id())
        await run(lambda: ca.add_entry(entry, caller))
        return JSONResponse(entry.to_json(), status_code=201)

    @app.delete("/v1/entries/{entry_id}")
    @guarded("entry_remove")
    async def remove_entry(request: Request) -> Response:
        caller = await admin(request)
        entry_id = request.path_params["entry_id"]
        await run(lambda: ca.remove_entry(entry_id, caller))
        return Response(status_code=204)

    @app.get("/v1/agents")
    @guarded("agent_list")
    async def list_agents(request: Request) -> Response:
        caller = await admin(request)
        wanted = request.query_params.get("spiffe_id")
        if wanted is not None:
            spiffe_id = _spiffe_id({"spiffe_id": wanted})
            record = await run(lambda: ca.get_agent(spiffe_id, caller))
            return JSONResponse(record.to_json())
        agents = await run(lambda: ca.list_agents(caller))
        return JSONResponse({"agents": [a.to_json() for a in agents]})

    @app.get("/v1/ca/status")
    @guarded("ca_status")
    async def status(request: Request) -> Response:
        await admin(request)
        return JSONResponse(await run(lambda: ca_status(ca, ca.clock.now())))

    @app.get("/v1/svids")
    @guarded("svid_list")
    async def svids(request: Request) -> Response:
        await admin(request)
        return JSONResponse({"svids": await run(lambda: live_svids(ca, ca.clock.now()))})

    @app.post("/v1/agents/evict")
    @guarded("agent_evict")
    async def evict_agent(request: Request) -> Response:
        caller = await admin(request)
        spiffe_id = _spiffe_id(await json_body(request))
        record = await run(lambda: ca.evict_agent(spiffe_id, caller))
        return JSONResponse(record.to_json())

    @app.post("/v1/join-tokens")
    @guarded("token_create")
    async def create_token(request: Request) -> Response:
        caller = await admin(request)
        body = await json_body(request)
        spiffe_id, ttl = _spiffe_id(body), _opt_int(body, "ttl")
        token = await run(lambda: ca.create_join_token(spiffe_id, ttl, caller))
        return JSONResponse({"token": token, "spiffe_id": str(spiffe_id)}, status_code=201)

    @app.post("/v1/ca/rotate/{step}")
    @guarded("rotate")
    async def rotate(request: Request) -> Response:
        caller = await admin(request)
        step = request.path_params["step"]
        if step == "prepare":
            authority = await run(lambda: ca.rotate_prepare(caller))
        elif step == "activate":
            authority = await run(lambda: ca.rotate_activate(caller))
        else:
            raise NotFound(f"no rotation step {step}")
        return JSONResponse(
            {
                "sequence": authority.sequence,
                "active": authority.active.id,
                "next": authority.next.id if authority.next else None,
            }
        )

    hot: dict[tuple[str, str], Handler] = {
        ("POST", "/v1/svid/x509"): svid_x509,
        ("POST", "/v1/svid/jwt"): svid_jwt,
        ("POST", "/v1/agent/svid/x509"): agent_svid_x509,
        ("POST", "/v1/agent/svid/jwt"): agent_svid_jwt,
        ("GET", "/v1/agent/entries"): agent_entries,
    }
    return HotRoutes(app, hot)
