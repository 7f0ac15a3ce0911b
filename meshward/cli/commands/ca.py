"""``meshward ca …``: the certificate authority's commands (parse, wire, run)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from ca.adminsvid import admin_request
from ca.embedded import bundle_file, write_admin_svid
from ca.errors import AlreadyInitialized, CaError, NotFound
from ca.passphrase import ca_passphrase
from ca.service import ADMIN_PATH
from ca.store.protocol import Entry
from ca.svidfiles import write_svid_files
from ca.wiring import home_exists, init_ca, load_upstream, open_ca, store_label
from meshward.cli.commands import ca_ops
from meshward.cli.commands.ca_common import cli_caller, open_or_exit, parse_duration, spiffe_id_arg
from meshward.cli.commands.common import ExitCode, fail, settings_from
from meshward.clock import SystemClock
from meshward.gitcheck import unignored_in_work_tree
from meshward.listen import AddressInUse, ensure_free
from meshward.logs import configure_logging
from meshward.metrics import prepare_run_dir
from meshward.settings import Settings
from meshward.spiffe import InvalidSpiffeId, SpiffeId, TrustDomain

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode=None,
    help="The certificate authority: SPIFFE X.509-SVIDs and JWT-SVIDs over HTTPS.",
    no_args_is_help=True,
)
entry_app = typer.Typer(
    rich_markup_mode=None,
    help="Registration entries: who may get which SPIFFE ID.",
    no_args_is_help=True,
)
token_app = typer.Typer(rich_markup_mode=None, help="One-time join tokens.", no_args_is_help=True)
rotate_app = typer.Typer(
    rich_markup_mode=None, help="Rotate the signing CA and JWT key by hand.", no_args_is_help=True
)
agent_app = typer.Typer(
    rich_markup_mode=None,
    help="Node agents the CA has attested: list, show, evict.",
    no_args_is_help=True,
)
admin_app = typer.Typer(
    rich_markup_mode=None, help="The operator's short-lived admin SVID.", no_args_is_help=True
)
app.add_typer(entry_app, name="entry")
app.add_typer(token_app, name="token")
app.add_typer(rotate_app, name="rotate")
app.add_typer(agent_app, name="agent")
app.add_typer(admin_app, name="admin")


def _where(settings: Settings) -> str:
    """Where the CA lives, for messages (a database URL without its password)."""
    if settings.ca.database_url is None:
        return str(settings.state_dir / "ca")
    return store_label(settings)


@app.command("init")
def init_command(
    ctx: typer.Context,
    trust_domain: Annotated[
        str | None, typer.Option("--trust-domain", help="SPIFFE trust domain, e.g. example.org.")
    ] = None,
    upstream_cert: Annotated[
        Path | None,
        typer.Option("--upstream-cert", help="Run under this upstream CA certificate (PEM)."),
    ] = None,
    upstream_key: Annotated[
        Path | None,
        typer.Option(
            "--upstream-key",
            help="The upstream CA's private key (PEM; encrypted with the CA passphrase or not).",
        ),
    ] = None,
) -> None:
    """Create the root (or use an upstream CA), signing CA, JWT key and the admin entry."""
    settings = settings_from(ctx, ca={"trust_domain": trust_domain})
    try:
        td = TrustDomain.parse(settings.ca.trust_domain)
    except InvalidSpiffeId as exc:
        fail(f"--trust-domain: {exc}")
    if (upstream_cert is None) != (upstream_key is None):
        fail("--upstream-cert and --upstream-key go together")
    admin_id = SpiffeId(td, ADMIN_PATH)
    try:
        if home_exists(settings):
            raise AlreadyInitialized(f"a CA already exists in {_where(settings)}")
        passphrase = ca_passphrase(settings, os.environ)
        upstream = None
        if upstream_cert is not None and upstream_key is not None:
            upstream = load_upstream(
                upstream_cert.read_bytes(), upstream_key.read_bytes(), passphrase
            )
        init_ca(settings, passphrase, cli_caller(), upstream=upstream)
    except (OSError, ValueError) as exc:
        fail(f"cannot initialise the CA: {exc}")
    except CaError as exc:
        fail(str(exc))
    typer.echo(f"meshward: CA for trust domain {td} in {_where(settings)}")
    typer.echo(f"meshward: admin ID {admin_id}; run `meshward ca admin login` for a 1 h admin SVID")


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    addr: Annotated[
        str | None,
        typer.Option("--addr", help="HOST:PORT for the HTTPS API (default 127.0.0.1:8443)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=256, help="Processes sharing the port (default 1)."),
    ] = None,
) -> None:
    """Serve the CA's HTTPS API until interrupted."""
    # The HTTPS server (uvicorn, FastAPI) loads for this command only.
    import uvloop  # noqa: PLC0415

    from ca import server, supervisor  # noqa: PLC0415

    settings = settings_from(ctx, ca={"addr": addr, "workers": workers})
    ca = open_or_exit(settings, serve=True)  # one clear error (and a replica's first join) up front
    trust_domain = ca.trust_domain
    workdir = settings.state_dir / "ca" / "run"
    n = settings.ca.workers
    if n == 1:
        try:
            one = server.CaServer(ca, settings.ca.addr, workdir, bundle_file(settings))
            one.bind()
        except CaError as exc:
            fail(str(exc))
        except AddressInUse as exc:
            fail(exc.one_line())
        typer.echo(f"meshward: CA API on https://{settings.ca.addr} (trust domain {trust_domain})")
        try:
            uvloop.run(one.serve())
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        return
    ca.store.close()
    try:
        ensure_free([(settings.ca.addr, "CA API", "--addr")])
    except AddressInUse as exc:
        fail(exc.one_line())
    typer.echo(
        f"meshward: CA API on https://{settings.ca.addr} (trust domain {trust_domain}, {n} workers)"
    )
    code = supervisor.run(
        functools.partial(open_ca, settings, dict(os.environ), serve=True),
        settings.ca.addr,
        workdir,
        bundle_file(settings),
        n,
        prepare_run_dir(settings.state_dir, f"ca-{os.getpid()}"),
        functools.partial(configure_logging, settings.log_format, settings.log_level),
    )
    raise typer.Exit(code)


@app.command("issue")
def issue_command(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Option("--spiffe-id", help="The SPIFFE ID to issue.")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory for svid.pem, key.pem, bundle.pem.")
    ],
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime, e.g. 1h (capped by ca.x509_svid_max_ttl).")
    ] = "1h",
) -> None:
    """Issue an X.509-SVID on the CA host and write svid.pem, key.pem and bundle.pem."""
    settings = settings_from(ctx)
    sid, seconds = spiffe_id_arg(spiffe_id), parse_duration(ttl)
    ca = open_or_exit(settings)
    if not sid.member_of(ca.trust_domain):
        fail(f"{sid} is not in trust domain {ca.trust_domain}")
    work_tree = unignored_in_work_tree(out / "key.pem")
    if work_tree is not None:
        typer.echo(
            f"meshward: warning: {out / 'key.pem'} is inside the Git work tree {work_tree} and"
            " not ignored: add it to .gitignore or write keys elsewhere",
            err=True,
        )
    try:
        issued = write_svid_files(ca, sid, out, seconds)
    except CaError as exc:
        fail(str(exc))
    typer.echo(
        f"meshward: {sid} serial {issued.serial:x} expires {issued.not_after:%Y-%m-%dT%H:%M:%SZ}"
    )


@app.command("bundle")
def bundle_command(
    ctx: typer.Context,
    pem: Annotated[bool, typer.Option("--pem", help="Print PEM instead of the JWK Set.")] = False,
) -> None:
    """Print the trust bundle (SPIFFE JWK Set, or PEM with --pem)."""
    ca = open_or_exit(settings_from(ctx))
    bundle = ca.authority.bundle()
    typer.echo((bundle.to_pem() if pem else bundle.to_json()).decode("ascii").rstrip("\n"))


@entry_app.command("add")
def entry_add(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Option("--spiffe-id", help="The SPIFFE ID the entry grants.")],
    selector: Annotated[
        list[str] | None,
        typer.Option("--selector", help="k8s:ns:NS, k8s:sa:SA, … (repeat; all must match)."),
    ] = None,
    x509_ttl: Annotated[str | None, typer.Option("--x509-ttl", help="X.509-SVID lifetime.")] = None,
    jwt_ttl: Annotated[str | None, typer.Option("--jwt-ttl", help="JWT-SVID lifetime.")] = None,
    dns: Annotated[
        list[str] | None, typer.Option("--dns", help="DNS name for the SVID (repeat).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="The ID may call the admin API.")] = False,
) -> None:
    """Add a registration entry and print it as JSON."""
    ca = open_or_exit(settings_from(ctx))
    entry = Entry(
        id=ca.new_entry_id(),
        spiffe_id=spiffe_id_arg(spiffe_id),
        selectors=frozenset(selector or ()),
        x509_ttl=parse_duration(x509_ttl) if x509_ttl else None,
        jwt_ttl=parse_duration(jwt_ttl) if jwt_ttl else None,
        dns_names=tuple(dns or ()),
        admin=admin,
    )
    try:
        ca.add_entry(entry, cli_caller())
    except CaError as exc:
        fail(str(exc))
    typer.echo(json.dumps(entry.to_json()))


@entry_app.command("list")
def entry_list(ctx: typer.Context) -> None:
    """Print every registration entry, one JSON object per line."""
    ca = open_or_exit(settings_from(ctx))
    for entry in ca.store.list_entries():
        typer.echo(json.dumps(entry.to_json()))


@entry_app.command("rm")
def entry_rm(
    ctx: typer.Context, entry_id: Annotated[str, typer.Argument(help="Entry id.")]
) -> None:
    """Remove a registration entry."""
    ca = open_or_exit(settings_from(ctx))
    try:
        ca.remove_entry(entry_id, cli_caller())
    except CaError as exc:
        fail(str(exc), ExitCode.NEGATIVE if exc.code == "not_found" else ExitCode.BAD_INPUT)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Option("--spiffe-id", help="The SPIFFE ID the token grants.")],
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Token lifetime (default ca.join_token_ttl).")
    ] = None,
) -> None:
    """Create a one-time join token and print only the token."""
    ca = open_or_exit(settings_from(ctx))
    try:
        token = ca.create_join_token(
            spiffe_id_arg(spiffe_id), parse_duration(ttl) if ttl else None, cli_caller()
        )
    except CaError as exc:
        fail(str(exc))
    typer.echo(token)


@rotate_app.command("prepare")
def rotate_prepare(ctx: typer.Context) -> None:
    """Create the next signing CA and JWT key and publish them in the bundle."""
    ca = open_or_exit(settings_from(ctx))
    try:
        authority = ca.rotate_prepare(cli_caller())
    except CaError as exc:
        fail(str(exc))
    next_id = authority.next.id if authority.next else "?"
    typer.echo(f"meshward: prepared signing CA {next_id}; bundle sequence {authority.sequence}")


@rotate_app.command("activate")
def rotate_activate(ctx: typer.Context) -> None:
    """Make the prepared signing CA the one that signs; retire the previous one."""
    ca = open_or_exit(settings_from(ctx))
    try:
        authority = ca.rotate_activate(cli_caller())
    except CaError as exc:
        fail(str(exc))
    typer.echo(
        f"meshward: signing CA {authority.active.id} active; bundle sequence {authority.sequence}"
    )


CA_URL_HELP = (
    "Ask the CA at this URL over its admin API, with the admin SVID from"
    " `meshward ca admin login`, instead of opening the CA's store here."
    " Several replicas: comma-separated, tried in turn on a connection failure or a 5xx."
)


def _admin_request(
    settings: Settings, ca_url: str, method: str, path: str, body: object = None
) -> dict[str, object]:
    """One admin API call with the operator's admin SVID (exit 2 when it is missing/expired)."""
    try:
        return admin_request(
            settings.state_dir / "admin", ca_url, method, path, SystemClock().now(), body
        )
    except NotFound as exc:
        fail(str(exc), ExitCode.NEGATIVE)
    except CaError as exc:
        fail(str(exc))


def _agent_json(record: object) -> str:
    return json.dumps(record.to_json())  # type: ignore[attr-defined]


def _one_agent(
    ctx: typer.Context,
    ca_url: str | None,
    remote: tuple[str, str, dict[str, str] | None],
    local: Callable[[Any], object],
) -> None:
    """Print one agent record: over the admin API with ``--ca-url``, else from the CA's
    state dir. An unknown agent exits 1, any other refusal 2."""
    settings = settings_from(ctx)
    if ca_url is not None:
        method, path, body = remote
        typer.echo(json.dumps(_admin_request(settings, ca_url, method, path, body)))
        return
    ca = open_or_exit(settings)
    try:
        record = local(ca)
    except CaError as exc:
        fail(str(exc), ExitCode.NEGATIVE if exc.code == "not_found" else ExitCode.BAD_INPUT)
    typer.echo(_agent_json(record))


@agent_app.command("list")
def agent_list(
    ctx: typer.Context,
    ca_url: Annotated[str | None, typer.Option("--ca-url", help=CA_URL_HELP)] = None,
) -> None:
    """Print every node agent the CA has attested, one JSON object per line."""
    settings = settings_from(ctx)
    if ca_url is not None:
        doc = _admin_request(settings, ca_url, "GET", "/v1/agents")
        for raw in doc.get("agents") or []:  # type: ignore[attr-defined]
            typer.echo(json.dumps(raw))
        return
    ca = open_or_exit(settings)
    try:
        agents = ca.list_agents(cli_caller())
    except CaError as exc:
        fail(str(exc))
    for record in agents:
        typer.echo(_agent_json(record))


@agent_app.command("show")
def agent_show(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Argument(help="The node's SPIFFE ID.")],
    ca_url: Annotated[str | None, typer.Option("--ca-url", help=CA_URL_HELP)] = None,
) -> None:
    """Print one node agent as JSON (exit 1 when the CA has no such agent)."""
    sid = spiffe_id_arg(spiffe_id)
    path = "/v1/agents?" + urlencode({"spiffe_id": str(sid)})
    _one_agent(ctx, ca_url, ("GET", path, None), lambda ca: ca.get_agent(sid, cli_caller()))


@agent_app.command("evict")
def agent_evict(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Argument(help="The node's SPIFFE ID.")],
    ca_url: Annotated[str | None, typer.Option("--ca-url", help=CA_URL_HELP)] = None,
) -> None:
    """Evict a node: it renews nothing more, nor gets SVIDs for the entries delegated to it."""
    sid = spiffe_id_arg(spiffe_id)
    body = {"spiffe_id": str(sid)}
    _one_agent(
        ctx,
        ca_url,
        ("POST", "/v1/agents/evict", body),
        lambda ca: ca.evict_agent(sid, cli_caller()),
    )


@admin_app.command("login")
def admin_login(ctx: typer.Context) -> None:
    """Write a 1 h admin SVID (svid.pem, key.pem, bundle.pem) to <state-dir>/admin.

    Needs the CA passphrase. The SVID is not renewable: log in again when it expires.
    """
    settings = settings_from(ctx)
    ca = open_or_exit(settings)
    out = settings.state_dir / "admin"
    try:
        issued = write_admin_svid(ca, out)
    except (CaError, OSError) as exc:
        fail(f"cannot write the admin SVID: {exc}")
    typer.echo(
        f"meshward: admin SVID {issued.spiffe_id} in {out}"
        f" (expires {issued.not_after:%Y-%m-%dT%H:%M:%SZ})"
    )


ca_ops.register(app, entry_app, token_app)
