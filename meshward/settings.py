"""One settings model for every part of meshward.

Values come, highest precedence first, from command-line options, ``MESHWARD_*``
environment variables (nested with ``__``, e.g. ``MESHWARD_PDP__GRPC_ADDR``), a
TOML file given by ``--config``, and the embedded defaults below. They are
validated once at start; an invalid value is reported naming the setting.

Errors::

    SettingsError
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from meshward.endpoints import split_urls
from meshward.errors import MeshwardError

__all__ = [
    "AgentSettings",
    "CaSettings",
    "CacheSettings",
    "ConsoleSettings",
    "DecisionLogSettings",
    "OidcIssuerSettings",
    "PdpSettings",
    "PolicySourceSettings",
    "Settings",
    "SettingsError",
    "TracingSettings",
    "load_settings",
    "parse_hostport",
    "secret_value",
]


class SettingsError(MeshwardError):
    """The configuration is invalid; the message names every bad setting."""

    code = "bad_settings"


def parse_hostport(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` allowed); raise ``ValueError`` if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def secret_value(inline: SecretStr | None, file: Path | None, what: str) -> bytes | None:
    """A secret given inline or as a file (stripped); ``None`` when neither is set.

    Raises ``ValueError`` naming ``what`` (never the value) when the file cannot
    be read or the secret is empty.
    """
    if inline is not None:
        value = inline.get_secret_value().encode()
    elif file is not None:
        try:
            value = file.read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the {what} file {file}: {exc.strerror}") from exc
    else:
        return None
    if not value:
        raise ValueError(f"the {what} is empty")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hostport(value: str) -> str:
    parse_hostport(value)
    return value


class OidcIssuerSettings(_Section):
    """An end-user token issuer the PDP accepts (docs/pdp.md#oidc-issuers)."""

    issuer: str = Field(..., min_length=1, description="the tokens' exact 'iss'")
    audiences: tuple[str, ...] = Field(..., min_length=1, description="accepted 'aud' values")
    jwks_file: Path | None = Field(None, description="JWKS file (re-read on an unknown kid)")
    jwks_url: str | None = Field(None, description="JWKS HTTPS URL (fetched, cached, refreshed)")
    jwks_ca_file: Path | None = Field(None, description="CA bundle to verify the JWKS URL with")
    algorithms: tuple[str, ...] = Field(("RS256", "ES256"), description="asymmetric only")
    groups_claim: str = Field("groups", description="claim holding the user's groups")
    refresh_min_seconds: float = Field(30.0, ge=0, description="rate limit of key refreshes")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
        allowed |= {"ES256", "ES384", "ES512", "EdDSA"}
        bad = sorted(set(value) - allowed)
        if bad or not value:
            raise ValueError(f"only asymmetric algorithms are allowed, not {bad}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("jwks_url must be an https:// URL")
        return value


class PdpSettings(_Section):
    """The policy decision point (``meshward pdp serve``)."""

    policies: str = Field("./policies", description="policy directory or Git URL")
    grpc_addr: str = Field("127.0.0.1:9191", description="Envoy ext_authz gRPC listener")
    http_addr: str = Field("127.0.0.1:8181", description="forward-auth, decision API, admin")
    trust_bundle: Path | None = Field(None, description="SPIFFE trust bundle (PEM or JWKS)")
    trust_bundle_url: str | None = Field(
        None,
        description="follow the bundle from the CA (GET /v1/bundle): CA URLs, comma-separated, "
        "or a DNS name with several addresses, tried in turn; pdp.trust_bundle trusts the CA "
        "the first time",
    )
    trust_bundle_poll_seconds: float = Field(
        2.0, ge=0, le=3600, description="how often the trust bundle file is checked for changes"
    )
    workers: int = Field(1, ge=1, le=256, description="processes sharing the ports")
    redis_url: str | None = Field(None, description="Redis for the shared decision cache")
    trust_domain: str | None = Field(
        None, description="trust domain of a PEM --trust-bundle (default: from its URI SAN)"
    )
    trust_peer_principal: bool = Field(
        False,
        description="believe Envoy's mTLS peer: attributes.source.certificate, verified against "
        "the trust bundle (with source.principal, which must match it)",
    )
    trust_bare_principal: bool = Field(
        False,
        description="with trust_peer_principal: also believe a source.principal that comes "
        "without source.certificate (only when nothing but your Envoy can reach the gRPC port)",
    )
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="SPIFFE IDs or IP networks (of the socket peer) whose x-forwarded-client-cert "
        "is read",
    )
    jwt_svid_audience_aliases: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="destination (SPIFFE ID, service name or host) -> other 'aud' values that "
        "name it; a JWT-SVID is accepted only at the destination its 'aud' names",
    )
    jwt_svid_any_destination_audiences: tuple[str, ...] = Field(
        (),
        description="'aud' values accepted at every destination (off: lets a service replay a "
        "caller's token to any other service; migration only)",
    )
    strip_authorization: bool = Field(
        True,
        description="remove the Authorization header from allowed requests before the upstream",
    )
    jwt_leeway_seconds: int = Field(30, ge=0, le=60, description="clock skew allowed for tokens")
    max_token_bytes: int = Field(8192, ge=256, le=65536, description="longest bearer token")
    oidc_issuers: tuple[OidcIssuerSettings, ...] = Field((), description="end-user token issuers")
    remove_headers: tuple[str, ...] = Field(
        (), description="more headers removed from allowed requests before the upstream"
    )
    drain_seconds: float = Field(5.0, ge=0, description="grace for in-flight checks on shutdown")
    wait_for_policies: bool = Field(
        False,
        description="start without a valid policy version: stay NOT_SERVING and deny until one "
        "passes the gate (default: exit 2)",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="bearer token of the admin API (GET /v1/decisions/{id}); unset: loopback "
        "callers only (prefer the _file form)",
    )
    admin_token_file: Path | None = Field(None, description="file holding pdp.admin_token")
    recent_decisions: int = Field(
        1000, ge=0, le=100_000, description="decisions kept in memory for GET /v1/decisions/{id}"
    )
    # The canonical request (docs/pdp.md#the-canonical-request).
    allow_encoded_slash: bool = Field(
        False, description="accept %2F in paths (kept encoded) for upstreams that need it"
    )
    case_insensitive_paths: bool = Field(
        False, description="lower-case paths for decisions: the upstream routes case-insensitively"
    )
    ext_authz_destination: str | None = Field(
        None,
        min_length=1,
        description="resource of /ext_authz requests (else the sidecar's x-meshward-destination)",
    )

    _check_grpc = field_validator("grpc_addr", "http_addr")(_hostport)

    @field_validator("trust_bundle_url")
    @classmethod
    def _bundle_urls(cls, value: str | None) -> str | None:
        return None if value is None else ",".join(split_urls(value))

    def upstream_removed_headers(self) -> tuple[str, ...]:
        """Headers taken off an allowed request before the upstream (lower-case, once each)."""
        names = [h.lower() for h in self.remove_headers]
        if self.strip_authorization:
            names.insert(0, "authorization")
        return tuple(dict.fromkeys(names))


class PolicySourceSettings(_Section):
    """Where ``pdp.policies`` is read from and how it is gated (docs/policies.md)."""

    branch: str = Field("main", description="Git branch to follow")
    subdir: str = Field("", description="directory of the bundle inside the Git repository")
    poll_interval: float | None = Field(
        None, gt=0, description="seconds between looks (default: 30 for Git, 2 for a directory)"
    )
    git_timeout: float = Field(60.0, gt=0, description="seconds one git command may take")
    max_archive_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="most bytes one Git version may unpack to"
    )
    max_archive_files: int = Field(10_000, gt=0, description="most files in one Git version")
    max_file_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="largest single file in one Git version"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of POST /v1/policies/refresh (prefer the _file form)"
    )
    webhook_secret_file: Path | None = Field(None, description="file holding the webhook key")
    shadow: str | None = Field(
        None, description="candidate policies (DIR or GIT-URL) evaluated beside the active ones"
    )
    shadow_branch: str | None = Field(None, description="branch of a Git shadow (default: branch)")
    shadow_subdir: str | None = Field(None, description="subdir of a Git shadow (default: subdir)")
    prepare_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="longest check of one version (parse, validate, tests)"
    )
    prepare_memory_mb: int = Field(
        2048,
        ge=0,
        le=1 << 20,
        description="address space of the checking process, MiB (0: no limit)",
    )


# Keys whose values a decision log never holds (headers, query parameters, context keys).
DECISION_LOG_REDACT = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "password",
    "api_key",
)
# Request headers whose values a decision log keeps; every other one logs [redacted].
DECISION_LOG_HEADERS = (
    "accept",
    "content-length",
    "content-type",
    "user-agent",
    "x-request-id",
    "traceparent",
    "tracestate",
)


class DecisionLogSettings(_Section):
    """One JSON line per decision (docs/policies.md#decision-logs)."""

    path: str | None = Field(None, description="'-' for stdout, a file, or unset for no log")
    max_bytes: int = Field(50 * 1024 * 1024, gt=0, description="rotate the file past this size")
    backups: int = Field(5, ge=0, description="rotated files to keep")
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of decisions logged")
    redact: tuple[str, ...] = Field(
        DECISION_LOG_REDACT,
        description="headers, query parameters and context or attribute keys whose values are "
        "never logged",
    )
    headers: tuple[str, ...] = Field(
        DECISION_LOG_HEADERS,
        description="request headers whose values are logged (every other one: [redacted])",
    )
    query_values: bool = Field(
        False,
        description="log query parameter values (except those named in redact); default: "
        "names only",
    )


class CacheSettings(_Section):
    """The decision cache (docs/cache.md). Redis is used when ``pdp.redis_url`` is set."""

    enabled: bool = Field(True, description="cache decisions at all")
    local_max_entries: int = Field(
        100_000, ge=0, description="in-process LRU size; 0 disables the in-process tier"
    )
    ttl_seconds: float = Field(
        60.0, gt=0, description="longest life of a cached decision (never past the credential)"
    )
    redis_cluster: bool = Field(False, description="pdp.redis_url is a Redis Cluster node")
    redis_timeout_ms: float = Field(5.0, gt=0, le=10_000, description="per Redis command")
    redis_connect_timeout_ms: float = Field(50.0, gt=0, le=60_000)
    redis_tls_ca_file: Path | None = Field(None, description="CA bundle for rediss:// URLs")
    redis_tls_cert_file: Path | None = Field(None, description="client certificate (rediss://)")
    redis_tls_key_file: Path | None = Field(None, description="client key (rediss://)")
    breaker_failures: int = Field(3, ge=1, description="consecutive errors that open the breaker")
    breaker_reset_seconds: float = Field(1.0, gt=0, description="open time before a probe")
    max_pending_writes: int = Field(1024, ge=1, description="background Redis writes in flight")
    time_attributes: tuple[str, ...] = Field(
        ("now", "time", "timestamp", "current_time", "request_time", "datetime"),
        description="context attributes carrying the current time: reading one disables caching",
    )


class TracingSettings(_Section):
    """OpenTelemetry spans per decision (``pip install meshward[otel]``); off by default."""

    enabled: bool = Field(False, description="record a span per decision")
    exporter: Literal["otlp", "console"] = Field(
        "otlp", description="otlp (OTEL_EXPORTER_OTLP_* variables) or console"
    )
    service_name: str = Field("meshward-pdp", min_length=1, description="service.name of spans")


class CaSettings(_Section):
    """The certificate authority (``meshward ca …``)."""

    trust_domain: str = Field("meshward.local", description="SPIFFE trust domain")
    addr: str = Field("127.0.0.1:8443", description="CA HTTPS API listener")
    passphrase_file: Path | None = Field(
        None, description="file holding the key passphrase (else MESHWARD_CA_PASSPHRASE)"
    )
    key_type: Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"] = Field(
        "ec-p256", description="key type of the root and signing CAs"
    )
    jwt_key_type: Literal["ec-p256", "ec-p384"] = Field(
        "ec-p256", description="JWT-SVID signing key (ES256 or ES384)"
    )
    root_ttl: int = Field(10 * 365 * 86400, gt=0, description="root CA lifetime, seconds")
    ca_ttl: int = Field(
        7 * 86400,
        gt=0,
        description="signing CA lifetime, seconds (prepare at 1/2, activate at 5/6)",
    )
    x509_svid_ttl: int = Field(3600, gt=0, description="default X.509-SVID lifetime, seconds")
    x509_svid_max_ttl: int = Field(86400, gt=0, description="longest X.509-SVID, seconds")
    x509_svid_min_ttl: int = Field(
        300, gt=0, description="shortest X.509-SVID the CA issues, seconds"
    )
    jwt_svid_ttl: int = Field(300, gt=0, description="default JWT-SVID lifetime, seconds")
    jwt_svid_max_ttl: int = Field(3600, gt=0, description="longest JWT-SVID, seconds")
    jwt_svid_min_ttl: int = Field(30, gt=0, description="shortest JWT-SVID the CA issues, seconds")
    backdate: int = Field(60, ge=0, le=3600, description="notBefore backdating, seconds")
    refresh_hint: int = Field(300, gt=0, description="bundle spiffe_refresh_hint, seconds")
    join_token_ttl: int = Field(3600, gt=0, description="default join token lifetime, seconds")
    rate_per_second: float = Field(5.0, gt=0, description="issuance requests/s per caller")
    rate_burst: int = Field(20, ge=1, description="issuance burst per caller")
    rotate_check_seconds: float = Field(10.0, gt=0, description="rotation task period")
    body_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds a request body may take to arrive (then 408)"
    )
    k8s_jwks_file: Path | None = Field(None, description="Kubernetes cluster JWKS (enables k8s)")
    k8s_issuer: str = Field(
        "https://kubernetes.default.svc.cluster.local", description="expected token issuer"
    )
    k8s_audience: str = Field("meshward", description="expected token audience")
    database_url: str | None = Field(
        None,
        description="the CA store: sqlite:///PATH (default <state-dir>/ca/ca.db) or "
        "postgresql://USER@HOST:PORT/DB?sslmode=verify-full&sslrootcert=… (several CA "
        "replicas share one PostgreSQL; the password is never logged)",
    )
    database_pool_size: int = Field(
        10, ge=1, le=200, description="PostgreSQL connections per CA process"
    )
    database_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="longest wait for a database connection (then 503)"
    )
    replica_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="this replica's name on a shared database (default: the host name); "
        "it keeps its own signing CA under the shared root",
    )
    lease_seconds: float = Field(
        30.0, gt=0, le=3600, description="rotation lease held by one replica at a time"
    )
    workers: int = Field(1, ge=1, le=256, description="ca serve processes sharing the port")

    _check_addr = field_validator("addr")(_hostport)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0].lower()
        if scheme not in ("sqlite", "postgresql", "postgres") or "://" not in value:
            raise ValueError("expected sqlite:///PATH or postgresql://… (scheme not supported)")
        return value

    @model_validator(mode="after")
    def _check_ttls(self) -> CaSettings:
        for kind, low, default, high in (
            ("x509", self.x509_svid_min_ttl, self.x509_svid_ttl, self.x509_svid_max_ttl),
            ("jwt", self.jwt_svid_min_ttl, self.jwt_svid_ttl, self.jwt_svid_max_ttl),
        ):
            if not low <= default <= high:
                raise ValueError(f"{kind}_svid_min_ttl <= {kind}_svid_ttl <= {kind}_svid_max_ttl")
        return self


class AgentSettings(_Section):
    """The node agent (``meshward agent run``); see docs/agent.md."""

    ca_url: str = Field(
        "https://127.0.0.1:8443",
        description="the CA HTTPS API; several replicas as a comma-separated list or a DNS "
        "name with several addresses (tried in turn on connection failure or 5xx)",
    )
    ca_bundle: Path | None = Field(
        None, description="the CA's bundle (JWK Set or PEM) to reach it the first time"
    )
    trust_domain: str | None = Field(None, description="the agent's trust domain (else ca's)")
    join_token: SecretStr | None = Field(None, description="one-time join token for attestation")
    token_file: Path | None = Field(
        None, description="file with a join token or a Kubernetes service-account token"
    )
    socket: Path | None = Field(
        None, description="Workload API Unix socket (default <state-dir>/agent/api.sock)"
    )
    sds_addr: str | None = Field(
        None, description="SDS listener: unix:/path, or loopback HOST:PORT (with sds_selectors)"
    )
    sds_selectors: tuple[str, ...] = Field(
        (),
        description="loopback TCP SDS only (required there): the selectors every caller has",
    )
    socket_group: str | None = Field(
        None, description="group that may connect to the Workload API socket (then 0660, else 0666)"
    )
    sds_socket_group: str | None = Field(
        None, description="group that may connect to the SDS socket (then 0660, else 0666)"
    )
    jwt_rate_per_second: float = Field(
        5.0, gt=0, description="JWT-SVIDs one workload (uid) may have the CA sign, per second"
    )
    jwt_rate_burst: int = Field(20, ge=1, description="burst of that per-workload JWT rate")
    write_dir: Path | None = Field(None, description="file mode: write SVID files here")
    write_spiffe_id: str | None = Field(None, description="file mode: which SVID (default first)")
    write_command: str | None = Field(None, description="file mode: command run after each write")
    write_signal: str | None = Field(None, description="file mode: signal sent after each write")
    write_pid_file: Path | None = Field(None, description="file mode: pid to send the signal to")
    sync_interval: float = Field(30.0, gt=0, description="seconds between bundle/entry checks")

    @field_validator("ca_url")
    @classmethod
    def _ca_urls(cls, value: str) -> str:
        return ",".join(split_urls(value))


class ConsoleSettings(_Section):
    """The web console (``meshward console``; ``meshward up`` starts it; docs/console.md)."""

    addr: str = Field("127.0.0.1:8080", description="console HTTP listener (loopback by default)")
    pdp_url: str | None = Field(None, description="PDP HTTP API (default: http://<pdp.http_addr>)")
    ca_url: str | None = Field(None, description="CA HTTPS API (default: https://<ca.addr>)")
    ca_bundle: Path | None = Field(
        None, description="trust bundle for the CA's TLS (default: <state-dir>/ca/bundle.json)"
    )
    ca_admin_dir: Path | None = Field(
        None,
        description="admin SVID (svid.pem, key.pem) for entries and agents "
        "(default: <state-dir>/admin)",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="login token required when addr is not loopback (default: pdp.admin_token)",
    )
    admin_token_file: Path | None = Field(None, description="file holding console.admin_token")
    sample_seconds: float = Field(5.0, gt=0, le=3600, description="how often metrics are sampled")

    _check_addr = field_validator("addr")(_hostport)


class Settings(BaseSettings):
    """Everything meshward can be told; see docs/operations.md for each field."""

    model_config = SettingsConfigDict(
        env_prefix="MESHWARD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state_dir: Path = Field(Path("./.meshward"), description="where state and keys live")
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    pdp: PdpSettings = PdpSettings()
    cache: CacheSettings = CacheSettings()
    policy_source: PolicySourceSettings = PolicySourceSettings()
    decision_log: DecisionLogSettings = DecisionLogSettings()
    tracing: TracingSettings = TracingSettings()
    ca: CaSettings = CaSettings()
    agent: AgentSettings = AgentSettings()
    console: ConsoleSettings = ConsoleSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is merged into init values by load_settings, under the
        # command-line options; the environment sits between the two.
        return (init_settings, env_settings)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {path}: not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: invalid TOML: {exc}") from exc


def load_settings(
    config_file: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from defaults, TOML, environment and ``overrides``.

    ``overrides`` holds command-line values as a nested dict; ``None`` values are
    dropped so an option the user did not give never hides the environment.
    """
    file_values = _read_toml(config_file) if config_file else {}
    cli_values = _drop_none(overrides or {})
    env_values = _env_values()
    merged = _deep_merge(_deep_merge(file_values, env_values), cli_values)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"setting {name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from exc


def _env_values() -> dict[str, Any]:
    """The ``MESHWARD_*`` environment as nested values (validated with the rest)."""
    return dict(EnvSettingsSource(Settings)())


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out
