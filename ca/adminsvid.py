"""The operator's admin SVID on disk (``meshward ca admin login``), checked before use.

``<state-dir>/admin/`` holds ``svid.pem``, ``key.pem`` (0600) and
``bundle.pem``. The SVID lives one hour and is never renewed: a missing or
expired one is an :class:`AdminSvidError` that tells the operator what to run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

__all__ = ["AdminSvidError", "AdminSvidFiles", "admin_svid_files"]

LOGIN_HINT = "run `meshward ca admin login`"


class AdminSvidError(Exception):
    """No usable admin SVID; the message says why and what to run."""


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
