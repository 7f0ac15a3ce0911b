"""The CA on embedded defaults, for ``meshward up``.

On first start it initialises a CA in ``<state-dir>/ca`` (trust domain from
the settings). When no passphrase is configured it generates one into
``<state-dir>/ca-passphrase`` (0600), which every ``meshward ca`` command
with the same state directory then finds (:mod:`ca.passphrase`) — convenient
for a laptop, no protection against someone who can read the state
directory. The trust bundle (JWK Set: X.509 and JWT authorities) is kept
current in ``<state-dir>/ca/bundle.json`` for the PDP.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ca.errors import CaError, NotFound
from ca.issuance import IssuedX509
from ca.keystore import write_private_file
from ca.passphrase import ca_passphrase
from ca.service import ADMIN_PATH, Caller, CertificateAuthority
from ca.svidfiles import write_svid_files
from ca.wiring import home_exists, init_ca, open_ca
from meshward.settings import Settings
from meshward.spiffe import SpiffeId

__all__ = [
    "ADMIN_SVID_TTL",
    "bundle_file",
    "prepare_embedded_ca",
    "serve_embedded_ca",
    "write_admin_svid",
]

ADMIN_SVID_TTL = 3600  # an admin SVID is never renewed: `meshward ca admin login` again


def bundle_file(settings: Settings) -> Path:
    return settings.state_dir / "ca" / "bundle.json"


def write_admin_svid(ca: CertificateAuthority, out: Path) -> IssuedX509:
    """A 1 h admin SVID (svid.pem, key.pem, bundle.pem) for the operator.

    Refused (``NotFound``) when the admin entry was removed: no entry, no admin.
    """
    admin_id = SpiffeId(ca.trust_domain, ADMIN_PATH)
    if not any(e.admin for e in ca.store.entries_for(admin_id)):
        raise NotFound(f"{admin_id} has no admin entry in this CA")
    return write_svid_files(ca, admin_id, out, ADMIN_SVID_TTL)


def prepare_embedded_ca(
    settings: Settings, env: Mapping[str, str] | None = None
) -> CertificateAuthority:
    """Open the CA in the state directory, creating it first if needed."""
    environ = os.environ if env is None else env
    passphrase = ca_passphrase(settings, environ, generate=True)
    if not home_exists(settings):
        init_ca(settings, passphrase, Caller(address="up")).store.close()
    ca = open_ca(settings, environ, serve=True)
    try:
        # `up` holds the passphrase, so it logs the operator in for the first hour.
        write_admin_svid(ca, settings.state_dir / "admin")
        write_private_file(bundle_file(settings), ca.authority.bundle().to_json())
        bundle_file(settings).chmod(0o644)
    except OSError as exc:
        raise CaError(f"cannot write the trust bundle or admin SVID: {exc}") from exc
    return ca


async def serve_embedded_ca(ca: CertificateAuthority, settings: Settings) -> None:
    """Serve the CA's HTTPS API on ``ca.addr`` until cancelled or interrupted."""
    from ca.server import CaServer  # noqa: PLC0415 (uvicorn/FastAPI load only to serve)

    server = CaServer(
        ca, settings.ca.addr, settings.state_dir / "ca" / "run", bundle_file(settings)
    )
    await server.serve()
