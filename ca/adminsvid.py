"""The operator's admin SVID on disk (``meshward ca admin login``), checked before use.

``<state-dir>/admin/`` holds ``svid.pem``, ``key.pem`` (0600) and
``bundle.pem``. The SVID lives one hour and is never renewed: a missing or
expired one is an :class:`AdminSvidError` that tells the operator what to run.
:func:`admin_request` makes one admin API call with it, to the first of the
given CA replicas that answers (:class:`meshward.endpoints.Endpoints`, the
rule the agent follows): a connection failure or a 5xx moves on to the next
after a jittered back-off; any other answer is the answer.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ca.errors import AdminRequestFailed, AdminSvidError, NotFound
from meshward.endpoints import Endpoints, split_urls

__all__ = ["AdminSvidError", "AdminSvidFiles", "admin_request", "admin_svid_files"]

LOGIN_HINT = "run `meshward ca admin login`"


@dataclass(frozen=True)
class AdminSvidFiles:
    svid: Path
    key: Path
    bundle: Path
    not_after: dt.datetime


def admin_svid_files(directory: Path, now: dt.datetime) -> AdminSvidFiles:
    """The admin SVID in ``directory`` if it is there and valid at ``now``."""
    files = AdminSvidFiles(
        directory / "svid.pem", directory / "key.pem", directory / "bundle.pem", now
    )
    if not all(p.is_file() for p in (files.svid, files.key, files.bundle)):
        raise AdminSvidError(f"no admin SVID in {directory}; {LOGIN_HINT}")
    try:
        leaf = x509.load_pem_x509_certificates(files.svid.read_bytes())[0]
    except (ValueError, IndexError, OSError) as exc:
        raise AdminSvidError(f"the admin SVID in {directory} is unreadable; {LOGIN_HINT}") from exc
    if now >= leaf.not_valid_after_utc:
        raise AdminSvidError(
            f"the admin SVID in {directory} expired at"
            f" {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; {LOGIN_HINT}"
        )
    if now < leaf.not_valid_before_utc:
        raise AdminSvidError(f"the admin SVID in {directory} is not valid yet; {LOGIN_HINT}")
    return AdminSvidFiles(files.svid, files.key, files.bundle, leaf.not_valid_after_utc)


def admin_request(
    directory: Path,
    ca_url: str,
    method: str,
    path: str,
    now: dt.datetime,
    body: object = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, object]:
    """One admin API call over mTLS with the admin SVID in ``directory``; the JSON answer.

    ``ca_url``: one URL or several, comma-separated (replicas of one CA),
    tried in turn. Raises :class:`AdminSvidError` (no usable SVID, or the CA
    refused it), :class:`~ca.errors.NotFound` (404) or
    :class:`~ca.errors.AdminRequestFailed` (no replica reachable, no JSON, any
    other refusal). Messages name the CA's error code only.
    """
    import httpx  # noqa: PLC0415 (loaded only by the commands that call the CA)

    files = admin_svid_files(directory, now)
    try:
        endpoints = Endpoints(split_urls(ca_url))
    except ValueError as exc:
        raise AdminRequestFailed(f"--ca-url: {exc}") from exc
    ctx = ssl.create_default_context(cafile=str(files.bundle))
    ctx.load_cert_chain(files.svid, files.key)
    failures: list[str] = []
    resp: httpx.Response | None = None
    for attempt, url in enumerate(endpoints.order()):
        if attempt:
            sleep(endpoints.delay(attempt - 1))
        try:
            with httpx.Client(base_url=url, verify=ctx, timeout=30) as client:
                resp = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            failures.append(f"{url}: {type(exc).__name__}")
            resp = None
            continue
        if resp.status_code < 500:
            break
        failures.append(f"{url}: {resp.status_code}")
    if resp is None:
        raise AdminRequestFailed(f"cannot reach the CA ({'; '.join(failures)})")
    try:
        doc = resp.json()
    except ValueError as exc:
        raise AdminRequestFailed(f"the CA answered {resp.status_code} without JSON") from exc
    code = doc.get("code") if isinstance(doc, dict) else None
    if resp.status_code == 404:
        raise NotFound(f"not found ({code})")
    if resp.status_code in (401, 403):
        raise AdminSvidError(f"the CA refused the admin SVID ({code}); {LOGIN_HINT}")
    if resp.status_code >= 400 or not isinstance(doc, dict):
        raise AdminRequestFailed(f"the CA refused the request ({code})")
    return doc
