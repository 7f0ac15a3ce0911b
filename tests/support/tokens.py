"""Signing keys and tokens for authentication tests (JWT-SVIDs and OIDC)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["SigningKey", "b64url", "unsigned_token"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand (for ``alg: none`` and other forgeries)."""
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(claims).encode()),
            b64url(signature),
        ]
    )


@dataclass
class SigningKey:
    """A private key with its ``kid``; ``jwk`` is the public JWK."""

    kid: str
    kind: str = "ec"  # "ec" (ES256) or "rsa" (RS256)
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = field(init=False)

    def __post_init__(self) -> None:
        if self.kind == "ec":
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def alg(self) -> str:
        return "ES256" if self.kind == "ec" else "RS256"

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            text = jwt.algorithms.ECAlgorithm.to_jwk(public)
        else:
            text = jwt.algorithms.RSAAlgorithm.to_jwk(public)
        out: dict[str, Any] = json.loads(text)
        out.update(kid=self.kid, use="sig")
        return out

    def sign(
        self,
        claims: dict[str, Any],
        *,
        alg: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        hdr = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=hdr)


def ts(when: dt.datetime) -> int:
    return int(when.timestamp())
