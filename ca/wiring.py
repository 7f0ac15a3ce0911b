"""Building the CA from settings (start-up wiring, kept light to import)."""

from __future__ import annotations

from collections.abc import Mapping

from ca.attestation.k8s import K8sAttestor
from ca.errors import WrongPassphrase
from ca.passphrase import ca_passphrase, generated_passphrase_file
from ca.service import CertificateAuthority
from ca.state import CaFiles
from ca.store.sqlite import SqliteStore
from meshward.clock import Clock, SystemClock
from meshward.settings import Settings

__all__ = ["ca_files", "open_ca"]


def ca_files(settings: Settings) -> CaFiles:
    return CaFiles(settings.state_dir / "ca")


def open_ca(
    settings: Settings, env: Mapping[str, str], clock: Clock | None = None
) -> CertificateAuthority:
    """Load the CA from the state directory (keys decrypted with the passphrase)."""
    files = ca_files(settings)
    passphrase = ca_passphrase(settings, env)
    try:
        authority = files.load(passphrase)
    except WrongPassphrase as exc:
        generated = generated_passphrase_file(settings)
        if settings.ca.passphrase_file is None and generated.exists():
            raise WrongPassphrase(
                f"{exc}; this CA was made by `meshward up` with the passphrase in {generated}:"
                " unset MESHWARD_CA_PASSPHRASE to use it"
            ) from exc
        raise
    k8s = None
    if settings.ca.k8s_jwks_file is not None:
        k8s = K8sAttestor.from_file(
            settings.ca.k8s_jwks_file, settings.ca.k8s_issuer, settings.ca.k8s_audience
        )
    return CertificateAuthority(
        authority=authority,
        store=SqliteStore(files.db),
        settings=settings.ca,
        clock=clock or SystemClock(),
        files=files,
        passphrase=passphrase,
        k8s=k8s,
    )
