"""The standing attack table: one row per bypass class, run through every way into a decision.

A row is a request an attacker sends (:class:`AttackRequest`: the request
target, method, ``Host`` and headers exactly as the client puts them on the
wire, and the destination the proxy pins) and what it must decide like:

- ``same_as`` — the canonical request with the same meaning; the row passes
  when both get the same decision through the adapter under test;
- ``same_as=None`` — the request is ambiguous: it must be denied.

Every adapter (``tests/attacks/drivers.py``: gRPC ``Check``, ``/ext_authz``,
``/auth/nginx``, ``/auth/traefik``, ``POST /v1/authorize``, ``meshward check``,
policy test cases; real proxies add theirs) runs every row whose ``adapters``
admits it. To add a bypass class, add a row here; to add a way in, add a
driver. The policies the rows are written against are :data:`POLICIES`; the
PDP runs with :data:`PDP_SETTINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = [
    "ADMIN_WORKLOAD",
    "CONTROLS",
    "DESTINATION",
    "DOCUMENT_ADAPTERS",
    "OTHER_DESTINATION",
    "PDP_SETTINGS",
    "POLICIES",
    "ROWS",
    "AttackRequest",
    "Row",
]

DESTINATION = "shop"  # the service the proxy fronts; anonymous callers may read it
OTHER_DESTINATION = "vault"  # a service no policy opens
ADMIN_WORKLOAD = "spiffe://meshward.local/ns/ops/sa/admin"  # the only one allowed on /admin

# Written against policies/schema.cedarschema (copied next to them by the fixtures).
POLICIES = f"""
@id("read-the-shop")
permit (principal, action in Action::"read", resource == Service::"{DESTINATION}");

@id("admin-paths")
forbid (principal, action, resource)
when {{ context has http && context.http.path like "/admin*" }}
unless {{ principal == Workload::"{ADMIN_WORKLOAD}" }};

@id("tenant-acme-only")
forbid (principal, action, resource)
when {{
  context has http &&
  context.http.headers has "x-tenant" &&
  context.http.headers["x-tenant"] != "acme"
}};
"""

# Nothing in the suite's address space is a trusted proxy except 10.0.0.0/8,
# which only a forged X-Forwarded-For could claim. Paths are compared
# case-insensitively, as for an upstream that routes that way.
PDP_SETTINGS: dict[str, object] = {
    "trusted_proxies": ["10.0.0.0/8"],
    "trust_peer_principal": False,
    "case_insensitive_paths": True,
}

# Adapters that take a decision document (JSON / YAML) rather than bytes on a wire.
DOCUMENT_ADAPTERS = frozenset({"api", "check", "policytest"})


@dataclass(frozen=True)
class AttackRequest:
    """One request as the client sends it, and the destination the proxy pins."""

    target: str | bytes = "/items"  # the request target: path and optional ?query, raw
    method: str = "GET"
    host: str = DESTINATION  # the Host the client sends
    destination: str = DESTINATION  # what the proxy/sidecar pins as the resource
    headers: tuple[tuple[str, str], ...] = ()  # client headers in order; repeats allowed

    def with_(self, **changes: object) -> AttackRequest:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Row:
    """A bypass class: ``request`` must decide like ``same_as`` (None: be denied)."""

    name: str
    request: AttackRequest
    same_as: AttackRequest | None
    adapters: frozenset[str] | None = None  # None: every adapter
    excluded: frozenset[str] = field(default_factory=frozenset)  # adapters that cannot say it
    note: str = ""

    def applies_to(self, adapter: str) -> bool:
        if adapter in self.excluded:
            return False
        return self.adapters is None or adapter in self.adapters


_ADMIN = AttackRequest(target="/admin/users")
_ITEMS = AttackRequest()


def _path(name: str, target: str | bytes, same_as: str | None, **kw: object) -> Row:
    canonical = None if same_as is None else AttackRequest(target=same_as)
    return Row(name, AttackRequest(target=target), canonical, **kw)  # type: ignore[arg-type]


ROWS: tuple[Row, ...] = (
    # -- path spellings (docs/pdp.md#the-canonical-request) --------------------
    _path("percent-encoded letter", "/%61dmin/users", "/admin/users"),
    _path("double slash", "//admin/users", "/admin/users"),
    _path("slashes inside", "/admin//users", "/admin/users"),
    _path("dot segment", "/./admin/users", "/admin/users"),
    _path("dot-dot segment", "/x/../admin/users", "/admin/users"),
    _path("encoded dot-dot", "/x/%2e%2E/admin/users", "/admin/users"),
    _path("dot-dot above the root", "/../../admin/users", "/admin/users"),
    _path("slashes then dot-dot", "/x//../admin/users", "/admin/users"),
    _path("encoded ? before dot-dots", "/v1/charges%3F/../../admin", "/admin"),
    _path("query is not the path", "/items?next=/../admin", "/items?next=/../admin"),
    _path("upper case", "/ADMIN/users", "/admin/users"),
    _path("encoded upper case", "/%41DMIN/users", "/admin/users"),
    _path("encoded slash", "/admin%2Fusers", None),
    _path("encoded slash climbing", "/items%2F..%2Fadmin", None),
    _path("encoded NUL", "/admin%00/users", None),
    _path("encoded CR LF", "/items%0d%0a/admin", None),
    _path("backslash", "/items/..\\admin", None),
    _path("encoded backslash", "/items/..%5Cadmin", None),
    _path("bad escape", "/adm%in/users", None),
    _path("truncated escape", "/admin/users%", None),
    _path("encoded invalid UTF-8", "/admin/%C3%28", None),
    _path("encoded lone continuation byte", "/%80admin", None),
    _path("overlong UTF-8 slash", "/items%C0%AF..%C0%AFadmin", None),
    _path("overlong UTF-8 slash, three bytes", "/%E0%80%AFadmin", None),
    _path(
        "raw invalid UTF-8",
        b"/admin/\xc3\x28",
        None,
        excluded=DOCUMENT_ADAPTERS,
        note="JSON and YAML documents carry text, not bytes",
    ),
    # -- repeated headers (RFC 9110 §5.3) ---------------------------------------
    Row(
        "repeated header is joined, not the last copy",
        _ITEMS.with_(headers=(("X-Tenant", "globex"), ("X-Tenant", "acme"))),
        _ITEMS.with_(headers=(("X-Tenant", "globex,acme"),)),
    ),
    Row(
        "repeated Authorization",
        _ITEMS.with_(headers=(("Authorization", "Bearer a.b.c"), ("Authorization", "Bearer d"))),
        None,
    ),
    Row(
        "repeated Host",
        _ITEMS.with_(headers=(("Host", DESTINATION), ("Host", OTHER_DESTINATION))),
        None,
    ),
    Row(
        "repeated X-Forwarded-Client-Cert",
        _ITEMS.with_(
            headers=(
                ("X-Forwarded-Client-Cert", f"URI={ADMIN_WORKLOAD}"),
                ("X-Forwarded-Client-Cert", f"URI={ADMIN_WORKLOAD}"),
            )
        ),
        None,
    ),
    Row(
        "repeated x-meshward-principal",
        _ITEMS.with_(
            headers=(
                ("x-meshward-principal", f'Workload::"{ADMIN_WORKLOAD}"'),
                ("x-meshward-principal", f'Workload::"{ADMIN_WORKLOAD}"'),
            )
        ),
        None,
    ),
    Row(
        "client copy of the pinned destination header",
        _ITEMS.with_(destination=OTHER_DESTINATION, headers=(("x-meshward-destination", "shop"),)),
        None,
        adapters=frozenset({"ext_authz"}),
        note="the sidecar sets x-meshward-destination; a second copy is refused",
    ),
    # -- the resource is never the client's choice ------------------------------
    Row(
        "client-chosen Host",
        _ITEMS.with_(host=DESTINATION, destination=OTHER_DESTINATION),
        _ITEMS.with_(host=OTHER_DESTINATION, destination=OTHER_DESTINATION),
    ),
    # -- the immediate peer is the socket, not X-Forwarded-For ------------------
    Row(
        "X-Forwarded-For claims a trusted proxy to pass a forged XFCC",
        _ADMIN.with_(
            headers=(
                ("X-Forwarded-For", "10.1.2.3"),
                ("Forwarded", "for=10.1.2.3"),
                ("X-Real-IP", "10.1.2.3"),
                ("X-Forwarded-Client-Cert", f"URI={ADMIN_WORKLOAD}"),
            )
        ),
        _ADMIN,
    ),
)

# Requests whose decision is known outright: they show the rows can fail.
CONTROLS: tuple[tuple[str, AttackRequest, bool], ...] = (
    ("plain read", _ITEMS, True),
    ("admin path", _ADMIN, False),
    ("other destination", _ITEMS.with_(destination=OTHER_DESTINATION), False),
    ("tenant acme", _ITEMS.with_(headers=(("X-Tenant", "acme"),)), True),
    ("tenant globex", _ITEMS.with_(headers=(("X-Tenant", "globex"),)), False),
    ("case-insensitive upstream", AttackRequest(target="/Admin/users"), False),
)
