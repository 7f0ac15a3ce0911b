"""JSON Web Keys (RFC 7517/7518/8037) for public keys: encode, decode, thumbprint.

One codec for every JWK meshward reads or writes: the SPIFFE bundle
(``x509-svid`` and ``jwt-svid`` keys), the PDP's OIDC issuer key sets and the
node agent's bundle. Supported: EC P-256/P-384/P-521, RSA, Ed25519.
Symmetric (``oct``) keys are refused: nothing in meshward verifies an HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "InvalidJwk",
    "Jwk",
    "PublicKey",
    "b64url",
    "jwk_thumbprint",
    "parse_jwk_set",
    "jwk_to_public_key",
    "public_key_to_jwk",
    "same_key",
]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}


class InvalidJwk(ValueError):
    """A JWK that is malformed or of an unsupported kind; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(
            f"invalid JWK: {reason.replace('_', ' ')}" + (f": {detail}" if detail else "")
        )
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Jwk:
    """A verification key and the algorithm its JWK pins (``None``: any allowed)."""

    key: PublicKey
    alg: str | None = None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidJwk("bad_jwk", "base64url member is not a string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError as exc:
        raise InvalidJwk("bad_jwk", "bad base64url") from exc


def _int_bytes(value: int, length: int | None = None) -> bytes:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


def public_key_to_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members (``kty`` and key parameters) of a public key."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        for crv, (curve, size) in _CURVES.items():
            if isinstance(key.curve, curve):
                nums = key.public_numbers()
                return {
                    "kty": "EC",
                    "crv": crv,
                    "x": b64url(_int_bytes(nums.x, size)),
                    "y": b64url(_int_bytes(nums.y, size)),
                }
        raise InvalidJwk("unsupported_key", f"curve {key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        rn = key.public_numbers()
        return {"kty": "RSA", "n": b64url(_int_bytes(rn.n)), "e": b64url(_int_bytes(rn.e))}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    raise InvalidJwk("unsupported_key", type(key).__name__)


def jwk_to_public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The public key a JWK describes; :class:`InvalidJwk` if it is malformed."""
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in _CURVES:
                raise InvalidJwk("unsupported_key", f"curve {crv!r}")
            curve, size = _CURVES[str(crv)]
            xb, yb = _unb64url(jwk.get("x")), _unb64url(jwk.get("y"))
            if len(xb) != size or len(yb) != size:
                raise InvalidJwk("bad_jwk", "EC coordinate length")
            nums = ec.EllipticCurvePublicNumbers(
                int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), curve()
            )
            return nums.public_key()
        if kty == "RSA":
            n = int.from_bytes(_unb64url(jwk.get("n")), "big")
            e = int.from_bytes(_unb64url(jwk.get("e")), "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise InvalidJwk("unsupported_key", f"OKP curve {jwk.get('crv')!r}")
            return ed25519.Ed25519PublicKey.from_public_bytes(_unb64url(jwk.get("x")))
    except ValueError as exc:
        if isinstance(exc, InvalidJwk):
            raise
        raise InvalidJwk("bad_jwk", "key parameters do not form a public key") from exc
    raise InvalidJwk("unsupported_key", f"kty {str(kty)[:20]!r}")


ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def parse_jwk_set(doc: Any, use: str | None = None) -> tuple[dict[str, Jwk], list[InvalidJwk]]:
    """The usable verification keys of a JWK Set by ``kid``, and why others were skipped.

    Skipped without a reason: non-objects, keys without ``kid``, symmetric
    (``oct``) keys, keys whose ``use`` is not ``use`` (when both say one), and
    keys pinning a non-asymmetric ``alg``. Keys that do not decode are skipped
    with their :class:`InvalidJwk`. A document that is not ``{"keys": [...]}``
    raises :class:`InvalidJwk` (``not_a_jwk_set``).
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise InvalidJwk("not_a_jwk_set", "expected an object with a 'keys' list")
    keys: dict[str, Jwk] = {}
    skipped: list[InvalidJwk] = []
    for raw in doc["keys"]:
        if not isinstance(raw, Mapping):
            continue
        kid = raw.get("kid")
        if not isinstance(kid, str) or not kid or raw.get("kty") == "oct":
            continue
        if use is not None and raw.get("use", use) != use:
            continue
        alg = raw.get("alg")
        if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
            continue
        try:
            keys[kid] = Jwk(jwk_to_public_key(raw), alg)
        except InvalidJwk as exc:
            skipped.append(InvalidJwk(exc.reason, f"kid {kid[:100]!r}: {exc.detail}"))
    return keys, skipped


def jwk_thumbprint(key: PublicKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of ``key``, base64url: a stable ``kid``."""
    members = public_key_to_jwk(key)
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def same_key(a: PublicKey, b: PublicKey) -> bool:
    """True when two public keys are the same key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return a.public_bytes(der, fmt) == b.public_bytes(der, fmt)
