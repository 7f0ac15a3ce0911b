"""``meshward ca`` commands for day-to-day operation: status, inspect, mint, list, tail.

``ca status``, ``ca svid inspect``, ``ca jwt mint``, ``ca entry show|update``,
``ca token list|revoke``, ``ca audit tail``. They run on the CA host with the
CA's state directory (as ``ca entry add`` does) and only parse, call
:mod:`ca` and print. :func:`register` adds them to the ``ca`` group (called by
:mod:`meshward.cli.commands.ca`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509

from authz.authn.trust import load_trust_bundles
from authz.errors import AuthnError
from ca.attestation.join_token import hash_token, looks_like_join_token
from ca.embedded import bundle_file
from ca.errors import CaError
from ca.status import ca_status, iso
from ca.store.protocol import Entry, TokenListing
from ca.wiring import store_label
from meshward.cli.commands.ca_common import cli_caller, open_or_exit, parse_duration, spiffe_id_arg
from meshward.cli.commands.common import ExitCode, fail, settings_from
from meshward.clock import SystemClock
from meshward.svid_chain import inspect_svid

__all__ = ["register"]


def status_command(ctx: typer.Context) -> None:
    """Print the CA's state as JSON: root and signing CAs with expiry, the rotation
    stage, counts of entries, join tokens and agents, and the database."""
    settings = settings_from(ctx)
    ca = open_or_exit(settings)
    out = {**ca_status(ca, ca.clock.now()), "database": store_label(settings)}
    typer.echo(json.dumps(out, indent=2))


def svid_inspect(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="svid.pem (leaf first, then intermediates).")],
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Trust bundle (JWK Set or PEM) to check the chain against "
            "(default: bundle.pem beside FILE, else the CA's <state-dir>/ca/bundle.json).",
        ),
    ] = None,
) -> None:
    """Print an X.509-SVID's SPIFFE ID, issuer, validity and whether its chain
    verifies against the trust bundle. Exit 0 valid, 1 invalid, 2 unreadable."""
    try:
        chain = x509.load_pem_x509_certificates(file.read_bytes())
    except (OSError, ValueError) as exc:
        fail(f"{file}: not a PEM certificate chain ({exc})")
    if bundle is None:
        beside = file.with_name("bundle.pem")
        bundle = beside if beside.exists() else bundle_file(settings_from(ctx))
    try:
        trusted = load_trust_bundles(bundle)
    except AuthnError as exc:
        fail(f"{bundle}: cannot read the trust bundle ({exc.code})")
    report = inspect_svid(chain, trusted.x509_authorities, str(bundle), SystemClock().now())
    typer.echo(json.dumps(report.to_json(), indent=2))
    raise typer.Exit(int(ExitCode.OK if report.valid else ExitCode.NEGATIVE))


def jwt_mint(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Option("--spiffe-id", help="The token's subject.")],
    audience: Annotated[
        list[str], typer.Option("--audience", help="An audience the token is for (repeat).")
    ],
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Lifetime (default ca.jwt_svid_ttl, 5m).")
    ] = None,
) -> None:
    """Mint a JWT-SVID on the CA host and print only the token (audited)."""
    ca = open_or_exit(settings_from(ctx))
    try:
        issued = ca.issue_jwt_local(
            spiffe_id_arg(spiffe_id), audience, parse_duration(ttl) if ttl else None
        )
    except CaError as exc:
        fail(str(exc))
    typer.echo(issued.token)


def _entry_or_exit(ctx: typer.Context, entry_id: str) -> tuple[Any, Entry]:
    ca = open_or_exit(settings_from(ctx))
    entry = ca.store.get_entry(entry_id)
    if entry is None:
        fail(f"no entry {entry_id}", ExitCode.NEGATIVE)
    return ca, entry


def entry_show(
    ctx: typer.Context, entry_id: Annotated[str, typer.Argument(help="Entry id.")]
) -> None:
    """Print one registration entry as JSON (exit 1 if there is none)."""
    _, entry = _entry_or_exit(ctx, entry_id)
    typer.echo(json.dumps(entry.to_json(), indent=2))


def entry_update(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(help="Entry id.")],
    spiffe_id: Annotated[str | None, typer.Option("--spiffe-id", help="New SPIFFE ID.")] = None,
    selector: Annotated[
        list[str] | None,
        typer.Option("--selector", help="Replace the selectors (repeat; all must match)."),
    ] = None,
    x509_ttl: Annotated[str | None, typer.Option("--x509-ttl", help="X.509-SVID lifetime.")] = None,
    jwt_ttl: Annotated[str | None, typer.Option("--jwt-ttl", help="JWT-SVID lifetime.")] = None,
    dns: Annotated[
        list[str] | None, typer.Option("--dns", help="Replace the DNS names (repeat).")
    ] = None,
    admin: Annotated[
        bool | None,
        typer.Option("--admin/--no-admin", help="Whether the ID may call the admin API."),
    ] = None,
) -> None:
    """Change a registration entry (only the options given) and print it as JSON."""
    ca, entry = _entry_or_exit(ctx, entry_id)
    changes: dict[str, Any] = {}
    if spiffe_id is not None:
        changes["spiffe_id"] = spiffe_id_arg(spiffe_id)
    if selector is not None:
        changes["selectors"] = frozenset(selector)
    if x509_ttl is not None:
        changes["x509_ttl"] = parse_duration(x509_ttl)
    if jwt_ttl is not None:
        changes["jwt_ttl"] = parse_duration(jwt_ttl)
    if dns is not None:
        changes["dns_names"] = tuple(dns)
    if admin is not None:
        changes["admin"] = admin
    updated = dataclasses.replace(entry, **changes)
    try:
        ca.update_entry(updated, cli_caller())
    except CaError as exc:
        fail(str(exc))
    typer.echo(json.dumps(updated.to_json(), indent=2))


def token_list(ctx: typer.Context) -> None:
    """Print every join token (by hash id, never the token), one JSON object per line."""
    ca = open_or_exit(settings_from(ctx))
    store: Any = ca.store
    if not isinstance(store, TokenListing):
        fail("this CA store cannot list join tokens")
    now = ca.clock.now()
    for token in store.list_tokens():
        state = "used" if token.used_at else ("expired" if token.expires_at <= now else "unused")
        doc = {
            "id": token.token_hash[:16],
            "spiffe_id": str(token.spiffe_id),
            "expires_at": iso(token.expires_at),
            "used_at": iso(token.used_at),
            "state": state,
        }
        typer.echo(json.dumps(doc))


def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[
        str, typer.Argument(help="The token's id from 'ca token list' (or the token itself).")
    ],
) -> None:
    """Make an unused join token unusable. Exit 1 if no such unused token."""
    ca = open_or_exit(settings_from(ctx))
    store: Any = ca.store
    if looks_like_join_token(token_id):
        hashes = [hash_token(token_id)]
    elif isinstance(store, TokenListing):
        hashes = [t.token_hash for t in store.list_tokens() if t.token_hash.startswith(token_id)]
    else:
        hashes = []
    if len(hashes) != 1 or len(token_id) < 8:
        fail(f"no single join token with id {token_id!r}", ExitCode.NEGATIVE)
    try:
        ca.revoke_join_token(hashes[0], cli_caller())
    except CaError as exc:
        fail(str(exc), ExitCode.NEGATIVE)
    typer.echo(f"meshward: join token {hashes[0][:16]} revoked")


def audit_tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="Records to show.")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between looks.")
    ] = 1.0,
) -> None:
    """Print the last audit records (issuance and admin actions), one JSON object per line."""
    ca = open_or_exit(settings_from(ctx))
    last = 0
    try:
        for record in ca.store.list_audit(lines):
            typer.echo(json.dumps(record.to_json()))
            last = max(last, record.id or 0)
        while follow:
            time.sleep(interval)
            for record in ca.store.list_audit(1000):
                if (record.id or 0) > last:
                    typer.echo(json.dumps(record.to_json()))
                    last = record.id or last
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register(ca_app: typer.Typer, entry_app: typer.Typer, token_app: typer.Typer) -> None:
    """Add these commands to the ``ca`` group and its ``entry``/``token`` subgroups."""
    jwt_app = typer.Typer(rich_markup_mode=None, help="JWT-SVIDs.", no_args_is_help=True)
    svid_app = typer.Typer(rich_markup_mode=None, help="X.509-SVID files.", no_args_is_help=True)
    audit_app = typer.Typer(rich_markup_mode=None, help="The CA's audit log.", no_args_is_help=True)
    ca_app.command("status")(status_command)
    svid_app.command("inspect")(svid_inspect)
    jwt_app.command("mint")(jwt_mint)
    entry_app.command("show")(entry_show)
    entry_app.command("update")(entry_update)
    token_app.command("list")(token_list)
    token_app.command("revoke")(token_revoke)
    audit_app.command("tail")(audit_tail)
    ca_app.add_typer(jwt_app, name="jwt")
    ca_app.add_typer(svid_app, name="svid")
    ca_app.add_typer(audit_app, name="audit")
