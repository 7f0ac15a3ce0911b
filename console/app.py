"""The console's FastAPI app: one route per page, data from :mod:`console.sources`.

Pages render on the server with Jinja2 (autoescaping on: a principal or a
policy id holding markup is shown as text). Nothing here changes live state;
the playground's POST evaluates in this process (:mod:`console.whatif`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import math
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from authz.engine.requestdoc import MAX_DOCUMENT_DEPTH
from console import schema_diagram, svg
from console.overview import History, snapshot
from console.security import (
    SECURITY_HEADERS,
    SessionSigner,
    csrf_token,
    csrf_valid,
    token_matches,
)
from console.sources import CaApi, PdpApi, Unavailable
from console.whatif import ActiveBundle, EditError, evaluate_edit
from meshward.asgi import BodyTooLarge, read_body
from meshward.clock import Clock
from meshward.jsonbody import JsonTooDeep, loads_bounded
from meshward.ratelimit import RateLimiter

__all__ = ["ConsoleConfig", "create_app"]

log = logging.getLogger(__name__)

CSRF_COOKIE = "mw_csrf"
SESSION_COOKIE = "mw_session"
MAX_FORM_BYTES = 2 << 20
FORM_SECONDS = 30.0
MAX_FORM_FIELDS = 32
FORM_TYPE = "application/x-www-form-urlencoded"
RECENT_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """How the console runs: where it reads from and whether a login is required."""

    pdp: PdpApi
    ca: CaApi | None
    login_token: bytes | None  # set: every page needs a login with it
    sample_seconds: float = 5.0
    session_seconds: int = 8 * 3600
    # Login attempts per client address: a burst of 5, then one per 12 s.
    login_burst: int = 5
    login_refill_seconds: float = 12.0


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.0%}"
    env.filters["ms"] = lambda v: "-" if v is None else f"{v * 1000:.2f} ms"
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env


def _first_cert(key: Mapping[str, Any]) -> x509.Certificate | None:
    chain = key.get("x5c") or []
    if not chain:
        return None
    try:
        return x509.load_der_x509_certificate(base64.b64decode(chain[0]))
    except ValueError:
        return None


def _authorities(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in bundle.get("keys", []):
        if key.get("use") != "x509-svid":
            continue
        cert = _first_cert(key)
        if cert is None:
            continue
        rows.append(
            {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "self_signed": cert.subject == cert.issuer,
                "not_before": cert.not_valid_before_utc,
                "not_after": cert.not_valid_after_utc,
            }
        )
    return rows


def _form_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The ``check`` JSON from the playground's fields; bad JSON is an EditError."""
    doc: dict[str, Any] = {
        "principal": form.get("principal", "").strip(),
        "action": form.get("action", "").strip(),
        "resource": form.get("resource", "").strip(),
    }
    for name in ("context", "parents"):
        text = form.get(name, "").strip()
        if text:
            try:
                doc[name] = loads_bounded(text.encode("utf-8"), MAX_DOCUMENT_DEPTH)
            except JsonTooDeep as exc:
                raise EditError(f"{name} nests deeper than {MAX_DOCUMENT_DEPTH}") from exc
            except json.JSONDecodeError as exc:
                raise EditError(f"{name} is not valid JSON: {exc.msg} at {exc.pos}") from exc
    return doc


def _suggestions(
    active: ActiveBundle | None, schema: schema_diagram.SchemaOutline
) -> dict[str, Any]:
    entities: list[str] = []
    if active is not None:
        try:
            for record in json.loads(active.entities or "[]"):
                uid = record.get("uid", {})
                entities.append(f"{uid.get('type')}::{json.dumps(uid.get('id'))}")
        except (ValueError, AttributeError):
            entities = []
    return {
        "entities": sorted(set(entities)),
        "actions": [f'Action::"{a.name}"' for a in schema.actions],
        "types": [e.name for e in schema.entities],
    }


def create_app(config: ConsoleConfig, clock: Clock) -> FastAPI:  # noqa: PLR0915 (routes)
    env = _templates()
    key = secrets.token_bytes(32)
    sessions = SessionSigner(key, config.session_seconds, lambda: clock.now().timestamp())
    login_attempts = RateLimiter(1 / config.login_refill_seconds, config.login_burst)
    history = History()
    activations: list[tuple[str, str]] = []  # (version, activated_at), as this console saw them

    def note_activation(status: Mapping[str, Any]) -> None:
        version = status.get("active_version")
        if isinstance(version, str) and (not activations or activations[-1][0] != version):
            activations.append((version, str(status.get("activated_at") or "")))
            del activations[:-50]

    async def sample() -> None:
        try:
            history.add(snapshot(await config.pdp.metrics_text(), clock.now()))
        except (Unavailable, ValueError) as exc:
            log.debug("console: metrics sample failed: %s", exc)

    async def sampler() -> None:
        while True:
            await sample()
            await asyncio.sleep(config.sample_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await config.pdp.close()
            if config.ca is not None:
                await config.ca.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    static = resources.files("console").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        open_path = path.startswith("/static/") or path in ("/login", "/healthz")
        logged_in = sessions.valid(request.cookies.get(SESSION_COOKIE))
        if config.login_token is not None and not open_path and not logged_in:
            if request.method == "GET":
                response: Response = RedirectResponse("/login", status_code=303)
            else:
                response = Response("login required", status_code=401)
            return _harden(response)
        if request.method == "POST" and not _same_origin(request):
            return _harden(Response("cross-origin form refused", status_code=403))
        response = await call_next(request)
        fresh = getattr(request.state, "csrf_cookie", None)
        if fresh and not request.cookies.get(CSRF_COOKIE):
            response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict")
        return _harden(response)

    def _harden(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # not a browser form post; the CSRF token still applies
            return True
        return origin == f"{request.url.scheme}://{request.url.netloc}"

    def _csrf_cookie(request: Request) -> str:
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf_cookie = cookie
        return cookie

    def page(request: Request, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        cookie = _csrf_cookie(request)
        html = env.get_template(template).render(
            nav=template.removesuffix(".html"),
            csrf=csrf_token(key, cookie),
            login=config.login_token is not None,
            now=clock.now(),
            **values,
        )
        return HTMLResponse(html, status_code=code)

    async def form(request: Request) -> dict[str, str]:
        try:
            body = await read_body(request, MAX_FORM_BYTES, FORM_SECONDS)
        except (BodyTooLarge, TimeoutError) as exc:
            raise EditError("form too large or too slow") from exc
        if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
            raise EditError(f"expected a form ({FORM_TYPE})")
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise EditError("the form could not be read") from exc
        fields = dict(pairs)
        if not csrf_valid(key, request.cookies.get(CSRF_COOKIE), fields.get("csrf")):
            raise PermissionError("missing or stale form token: reload the page")
        return fields

    async def active_bundle() -> tuple[ActiveBundle | None, dict[str, Any] | None, str | None]:
        try:
            doc = await config.pdp.active_bundle()
        except Unavailable as exc:
            return None, None, str(exc)
        return ActiveBundle.from_json(doc), doc, None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        return page(request, "login.html", failed=False)

    @app.post("/login")
    async def login(request: Request) -> Response:
        try:
            fields = await form(request)
        except (PermissionError, EditError) as exc:
            return page(request, "login.html", code=403, failed=True, message=str(exc))
        client = request.client.host if request.client else "?"
        if not login_attempts.allow(client, clock.monotonic()):
            log.warning("console: login attempts from %s over the limit", client)
            refused = page(
                request, "login.html", code=429, failed=True, message="too many attempts; wait"
            )
            refused.headers["retry-after"] = str(math.ceil(config.login_refill_seconds))
            return refused
        if config.login_token is None or not token_matches(
            config.login_token, fields.get("token", "")
        ):
            log.warning("console: failed login from %s", client)
            return page(request, "login.html", code=401, failed=True, message="wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sessions.issue(),
            max_age=config.session_seconds,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        try:
            await form(request)
        except (PermissionError, EditError):
            return Response("bad form token", status_code=403)
        response = RedirectResponse("/login" if config.login_token else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        problems: list[str] = []
        try:
            status = await config.pdp.status()
            note_activation(status)
        except Unavailable as exc:
            status, problems = {}, [str(exc)]
        await sample()
        latest = history.latest
        rates = history.rates()
        charts: dict[str, str] = {"rate": svg.sparkline(rates, title="decisions per second")}
        if latest is not None:
            d = latest.decisions
            charts["split"] = svg.split_bar(
                [
                    svg.Bar("allow", d.get("allow", 0.0), "allow"),
                    svg.Bar("deny", d.get("deny", 0.0), "deny"),
                    svg.Bar("unauthenticated", d.get("unauthenticated", 0.0), "unauth"),
                    svg.Bar("error", d.get("error", 0.0), "error"),
                ],
                title="decisions by result",
            )
        return page(
            request,
            "overview.html",
            status=status,
            problems=problems,
            latest=latest,
            rate=rates[-1] if rates else None,
            p50=history.recent_latency(0.5),
            p99=history.recent_latency(0.99),
            charts=charts,
            activations=activations,
        )

    @app.get("/policies", response_class=HTMLResponse)
    async def policies(request: Request, q: str = "") -> Response:
        active, doc, problem = await active_bundle()
        rows = list((doc or {}).get("policies", []))
        needle = q.strip().lower()
        if needle:
            rows = [
                r
                for r in rows
                if needle in str(r.get("id", "")).lower()
                or needle in str(r.get("text", "")).lower()
            ]
        schema = schema_diagram.outline(active.schema if active else "")
        return page(
            request,
            "policies.html",
            active=active,
            rows=rows,
            q=q,
            coverage=(doc or {}).get("coverage", {}),
            problem=problem,
            diagram=schema_diagram.render(schema),
        )

    async def playground_page(
        request: Request,
        fields: Mapping[str, str],
        *,
        live: Mapping[str, Any] | None = None,
        whatif: Any = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        active, _doc, problem = await active_bundle()
        schema = schema_diagram.outline(active.schema if active else "")
        files = sorted(active.files) if active else []
        chosen = fields.get("file") or (files[0] if files else "")
        text = fields.get("policy_text")
        if text is None and active is not None:
            text = active.files.get(chosen, "")
        return page(
            request,
            "playground.html",
            code=status,
            fields=fields,
            files=files,
            chosen=chosen,
            policy_text=text or "",
            live=live,
            whatif=whatif,
            error=error or problem,
            suggest=_suggestions(active, schema),
        )

    @app.get("/playground", response_class=HTMLResponse)
    async def playground(request: Request) -> Response:
        return await playground_page(request, dict(request.query_params))

    @app.post("/playground", response_class=HTMLResponse)
    async def playground_run(request: Request) -> Response:
        try:
            fields = await form(request)
        except PermissionError as exc:
            return page(request, "error.html", code=403, message=str(exc))
        except EditError as exc:
            return page(request, "error.html", code=413, message=str(exc))
        try:
            document = _form_document(fields)
        except EditError as exc:
            return await playground_page(request, fields, error=str(exc), status=400)
        try:
            live = await config.pdp.authorize(document)
        except Unavailable as exc:
            live = {"error": str(exc)}
        active, _doc, problem = await active_bundle()
        whatif = None
        error = problem
        if active is not None:
            edits = {}
            chosen = fields.get("file", "")
            if chosen and "policy_text" in fields:
                edits[chosen] = fields["policy_text"].replace("\r\n", "\n")
            try:
                whatif = await asyncio.to_thread(evaluate_edit, active, edits, document)
            except EditError as exc:
                error = str(exc)
        return await playground_page(request, fields, live=live, whatif=whatif, error=error)

    @app.get("/decisions", response_class=HTMLResponse)
    async def decisions(
        request: Request, principal: str = "", resource: str = "", decision: str = ""
    ) -> Response:
        filters = {"principal": principal, "resource": resource, "decision": decision}
        try:
            rows = await config.pdp.recent_decisions(filters, RECENT_LIMIT)
            problem = None
        except Unavailable as exc:
            rows, problem = [], str(exc)
        return page(request, "decisions.html", rows=rows, filters=filters, problem=problem)

    @app.get("/decisions/{decision_id}", response_class=HTMLResponse)
    async def decision_detail(request: Request, decision_id: str) -> Response:
        if not decision_id.replace("-", "").isalnum() or len(decision_id) > 128:
            return page(request, "error.html", code=400, message="not a decision id")
        try:
            record = await config.pdp.decision(decision_id)
        except Unavailable as exc:
            return page(request, "error.html", code=404, message=str(exc))
        return page(request, "decision.html", record=record, decision_id=decision_id)

    @app.get("/identity", response_class=HTMLResponse)
    async def identity(request: Request, q: str = "") -> Response:
        problems: list[str] = []
        authorities: list[dict[str, Any]] = []
        jwt_keys: list[str] = []
        entries: list[Any] = []
        agents: list[Any] = []
        svids: list[Any] = []
        status: dict[str, Any] = {}
        if config.ca is None:
            problems.append("no CA configured (console.ca_url)")
        else:
            try:
                bundle = await config.ca.bundle()
                authorities = _authorities(bundle)
                jwt_keys = [
                    str(k.get("kid")) for k in bundle.get("keys", []) if k.get("use") == "jwt-svid"
                ]
            except Unavailable as exc:
                problems.append(str(exc))
            try:
                status = await config.ca.status()
                entries = await config.ca.entries()
                agents = await config.ca.agents()
                svids = await config.ca.svids()
            except Unavailable as exc:
                problems.append(str(exc))
        needle = q.strip().lower()
        if needle:
            entries = [e for e in entries if needle in json.dumps(e).lower()]
            agents = [a for a in agents if needle in json.dumps(a).lower()]
            svids = [v for v in svids if needle in json.dumps(v).lower()]
        now = clock.now()
        spans = [
            svg.Span(
                ("root " if a["self_signed"] else "signing ") + a["subject"],
                a["not_before"],
                a["not_after"],
                "root" if a["self_signed"] else "signing",
            )
            for a in authorities
        ]
        return page(
            request,
            "identity.html",
            authorities=authorities,
            jwt_keys=jwt_keys,
            entries=entries,
            agents=agents,
            svids=svids,
            rotation=status.get("rotation"),
            problems=problems,
            q=q,
            timeline=svg.timeline(spans, now, title="trust bundle validity"),
            until=lambda t: t - now if isinstance(t, dt.datetime) else None,
        )

    return app
