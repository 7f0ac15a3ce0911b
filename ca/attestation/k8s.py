"""Kubernetes projected service-account tokens, verified offline.

The cluster's JWKS (from ``kubectl get --raw /openid/v1/jwks``), issuer and
expected audience are configured; a token that verifies yields the selectors
``k8s:ns:<namespace>`` and ``k8s:sa:<service account>``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from ca.errors import AttestationFailed, BadRequest
from meshward.jwk import Jwk, parse_jwk_set
from meshward.jwt_svid import InvalidJwtSvid, check_times

__all__ = ["K8sAttestor"]

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
MAX_TOKEN_BYTES = 16 * 1024


def _unverified_kid(token: str) -> object:
    """The ``kid`` of the token's header, only to pick the key ``jwt.decode`` then checks.

    PyJWT's own header reader checks the whole token character by character,
    as ``jwt.decode`` does again; this reads only the header segment.
    """
    segment = token.partition(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return header.get("kid") if isinstance(header, dict) else None


@dataclass(frozen=True)
class K8sAttestor:
    """Verifies projected service-account tokens against one cluster's keys."""

    jwks: Mapping[str, Jwk]
    issuer: str
    audience: str
    leeway: dt.timedelta = dt.timedelta(seconds=0)

    @classmethod
    def from_file(cls, path: Path, issuer: str, audience: str) -> K8sAttestor:
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            keys, _skipped = parse_jwk_set(data)
        except (OSError, ValueError) as exc:  # InvalidJwk included
            raise BadRequest(f"cannot load cluster JWKS {path}", code="bad_k8s_jwks") from exc
        return cls(keys, issuer, audience)

    def attest(self, token: str, now: dt.datetime) -> frozenset[str]:
        """The selectors a valid token proves; :class:`AttestationFailed` otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            raise AttestationFailed("token too large", code="bad_token")
        try:
            kid = _unverified_kid(token)
            key = self.jwks.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise AttestationFailed("unknown key id", code="bad_token")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[a for a in ALGORITHMS if key.alg in (None, a)],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iss", "aud", "sub"],
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            # TypeError: a key of another type than the header's alg (a JWK without "alg").
            raise AttestationFailed("token does not verify", code="bad_token") from exc
        try:
            check_times(claims, now, int(self.leeway.total_seconds()))
        except InvalidJwtSvid as exc:  # the same time rules as every JWT meshward reads
            raise AttestationFailed(
                f"token {exc.reason.replace('_', ' ')}", code="bad_token"
            ) from exc
        kube = claims.get("kubernetes.io")
        if not isinstance(kube, dict):
            raise AttestationFailed("not a service-account token", code="bad_token")
        ns = kube.get("namespace")
        account = kube.get("serviceaccount")
        sa = account.get("name") if isinstance(account, dict) else None
        if not isinstance(ns, str) or not isinstance(sa, str) or not ns or not sa:
            raise AttestationFailed("token names no service account", code="bad_token")
        return frozenset({f"k8s:ns:{ns}", f"k8s:sa:{sa}"})
