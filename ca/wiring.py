"""Building the CA from settings (start-up wiring, kept light to import).

``ca.database_url`` picks the store: unset or ``sqlite:///PATH`` is the
embedded SQLite file with the authority in the state directory;
``postgresql://…`` is a database that several replicas share, holding the
authority too (:mod:`ca.replicas`).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from ca.attestation.k8s import K8sAttestor
from ca.authority import Authority
from ca.errors import WrongPassphrase
from ca.keystore import PrivateKey
from ca.passphrase import ca_passphrase, generated_passphrase_file
from ca.service import ADMIN_PATH, Caller, CertificateAuthority, init_authority, random_serial
from ca.state import AuthorityHome, CaFiles
from ca.store.protocol import AuthorityRecords, CallerRates, CaStore, Entry
from ca.store.sqlite import SqliteStore
from meshward.clock import Clock, SystemClock
from meshward.ratelimit import Limiter
from meshward.settings import Settings
from meshward.spiffe import SpiffeId, TrustDomain

__all__ = [
    "ca_files",
    "create_ca",
    "home_exists",
    "init_ca",
    "load_upstream",
    "open_ca",
    "open_store",
    "replica_id",
    "store_label",
]


def ca_files(settings: Settings) -> CaFiles:
    return CaFiles(settings.state_dir / "ca")


def replica_id(settings: Settings) -> str:
    """This process's replica name on a shared database (default: the host name)."""
    return settings.ca.replica_id or socket.gethostname().split(".")[0] or "ca"


def _shared(settings: Settings) -> bool:
    url = settings.ca.database_url
    return url is not None and not url.lower().startswith("sqlite")


def _sqlite_path(settings: Settings) -> Path:
    url = settings.ca.database_url
    if url is None:
        return ca_files(settings).db
    return Path(url.split("://", 1)[1].removeprefix("/"))


def store_label(settings: Settings) -> str:
    """Where the store is, for people: the SQLite path or the URL without its password."""
    if not _shared(settings):
        return str(_sqlite_path(settings))
    from meshward.logs import redact_url  # noqa: PLC0415

    return redact_url(settings.ca.database_url or "")


def open_store(settings: Settings) -> CaStore:
    """The store ``ca.database_url`` names (schema migrated on open)."""
    if not _shared(settings):
        return SqliteStore(_sqlite_path(settings))
    from ca.store.postgres import PostgresStore  # noqa: PLC0415 (psycopg only when used)

    return PostgresStore(
        settings.ca.database_url or "",
        pool_size=settings.ca.database_pool_size,
        timeout=settings.ca.database_timeout_seconds,
    )


def _home(settings: Settings, store: CaStore, clock: Clock) -> AuthorityHome:
    if isinstance(store, AuthorityRecords):
        from ca.replicas import DbAuthority  # noqa: PLC0415

        return DbAuthority(store, replica_id(settings), clock, settings.ca.lease_seconds)
    return ca_files(settings)


def home_exists(settings: Settings) -> bool:
    """Whether a CA exists where the settings keep it."""
    if not _shared(settings):
        return ca_files(settings).exists()
    store = open_store(settings)
    try:
        return _home(settings, store, SystemClock()).exists()
    finally:
        store.close()


def _limiter(settings: Settings, store: CaStore, clock: Clock) -> Limiter | None:
    """Buckets in the database when several processes serve (replicas, workers); else in memory."""
    if isinstance(store, CallerRates) and (_shared(settings) or settings.ca.workers > 1):
        from ca.replicas import DbRateLimiter  # noqa: PLC0415

        return DbRateLimiter(store, settings.ca.rate_per_second, settings.ca.rate_burst, clock)
    return None


def create_ca(
    settings: Settings,
    passphrase: bytes,
    trust_domain: TrustDomain,
    clock: Clock,
    upstream: tuple[x509.Certificate, PrivateKey] | None = None,
) -> CertificateAuthority:
    """A new authority (``meshward ca init``, ``meshward up``), stored where settings say."""
    from ca.errors import AlreadyInitialized  # noqa: PLC0415

    store = open_store(settings)
    home = _home(settings, store, clock)
    try:
        if home.exists():
            where = "the database" if _shared(settings) else str(ca_files(settings).root)
            raise AlreadyInitialized(f"a CA already exists in {where}")
        label = replica_id(settings) if _shared(settings) else ""
        authority: Authority = init_authority(
            trust_domain, settings.ca, clock.now(), random_serial, upstream, label
        )
        home.init(authority, passphrase)
    except BaseException:
        store.close()
        raise
    return CertificateAuthority(
        authority,
        store,
        settings.ca,
        clock,
        files=home,
        passphrase=passphrase,
        limiter=_limiter(settings, store, clock),
    )


def load_upstream(
    cert_pem: bytes, key_pem: bytes, passphrase: bytes
) -> tuple[x509.Certificate, PrivateKey]:
    """An upstream CA from PEM: its certificate and key (encrypted with the CA passphrase or not).

    Raises ``ValueError`` for PEM that does not parse or a key of a kind the CA does not use.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    cert = x509.load_pem_x509_certificate(cert_pem)
    password = passphrase if b"ENCRYPTED" in key_pem else None
    key = serialization.load_pem_private_key(key_pem, password=password)
    if not isinstance(key, PrivateKey):
        raise ValueError("the upstream key is not an EC, RSA or Ed25519 private key")
    return cert, key


def init_ca(
    settings: Settings,
    passphrase: bytes,
    caller: Caller,
    clock: Clock | None = None,
    upstream: tuple[x509.Certificate, PrivateKey] | None = None,
) -> CertificateAuthority:
    """Initialise the CA where settings say: root (or upstream), signing CA, JWT key, admin entry.

    The one way a CA comes into being (``meshward ca init``, first ``meshward up``).
    Raises ``AlreadyInitialized`` when one exists.
    """
    td = TrustDomain.parse(settings.ca.trust_domain)
    ca = create_ca(settings, passphrase, td, clock or SystemClock(), upstream)
    ca.add_entry(Entry(ca.new_entry_id(), SpiffeId(td, ADMIN_PATH), admin=True), caller)
    return ca


def open_ca(
    settings: Settings,
    env: Mapping[str, str],
    clock: Clock | None = None,
    *,
    serve: bool = False,
) -> CertificateAuthority:
    """Load the CA (keys decrypted with the passphrase).

    On a shared database, ``serve`` makes this process a replica (its own
    signing CA, created the first time); a command that does not serve acts
    as this host's replica if it is one, else as the newest replica.
    """
    clock = clock or SystemClock()
    passphrase = ca_passphrase(settings, env)
    store = open_store(settings)
    try:
        home = _home(settings, store, clock)
        from ca.replicas import DbAuthority  # noqa: PLC0415

        if isinstance(home, DbAuthority):
            if serve:
                s = settings.ca
                home.join(passphrase, s.key_type, s.jwt_key_type, s.ca_ttl, random_serial)
            else:
                home.adopt_newest()
        try:
            authority = home.load(passphrase)
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
    except BaseException:
        store.close()
        raise
    return CertificateAuthority(
        authority=authority,
        store=store,
        settings=settings.ca,
        clock=clock,
        files=home,
        passphrase=passphrase,
        k8s=k8s,
        limiter=_limiter(settings, store, clock),
    )
