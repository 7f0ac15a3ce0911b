"""The canonical request target: the path, host and headers policies decide on (pure).

Proxies and upstreams each read a request's path, host and headers their own
way; the PDP must decide on what the upstream will serve, so every spelling of
one path decides as that path, and a spelling whose meaning depends on who
reads it is refused. docs/pdp.md ("The canonical request") is the
specification; in short, :func:`canonical_path`:

1. takes the path with the query already split off, before any decoding
   (``%3F`` is part of the path, never the start of a query);
2. refuses ``\\`` and control characters, raw or encoded; a raw ``#`` or
   space; an encoded ``/`` (``%2F``, unless ``allow_encoded_slash``); an
   invalid percent escape; bytes that are not UTF-8 once every escape is
   decoded; and anything that does not start with ``/``;
3. decodes the escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``),
   writes every other escape with upper-case hex and escapes raw characters
   outside RFC 3986's ``pchar`` (UTF-8, upper-case hex);
4. merges repeated slashes, then removes dot segments (RFC 3986 §5.2.4);
5. with ``lowercase`` (upstreams that route case-insensitively), lower-cases
   the ASCII letters outside escapes.

The result is a fixed point: ``canonical_path(canonical_path(p)) ==
canonical_path(p)`` (property-tested).

:func:`canonical_host` lower-cases a ``Host``/``:authority`` and drops its port
and trailing dot; :func:`join_headers` gives one value per header name, as
RFC 9110 §5.3 joins repeated fields, and refuses a repeated header whose
meaning is "exactly one" (credentials, the host, the original request line,
forwarded certificates, ``x-meshward-*``).

Errors (below :class:`authz.errors.RequestError`)::

    MalformedRequest    a deny; ``code`` says why (``malformed_path``,
                        ``encoded_slash``, ``repeated_header``, ``bad_host``, …)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from authz.errors import MalformedRequest

__all__ = [
    "MalformedRequest",
    "SINGLE_HEADERS",
    "canonical_host",
    "canonical_path",
    "join_headers",
    "wire_text",
]


# The already-canonical common case: pchar without "%", no "//", no "/." segment.
_PLAIN = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 pchar (and "/") kept as they are; other printable ASCII is escaped.
_KEEP = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
# Never acceptable, raw: backslash, fragment, space, and controls.
_REFUSE_RAW = frozenset("\\# \x7f") | frozenset(chr(c) for c in range(0x20))
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPE_LOWER = re.compile(r"%[0-9a-f]{2}")


def _escape_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def _control(code: int) -> bool:
    return code < 0x20 or 0x7F <= code <= 0x9F


def _decode_unreserved(raw: str, allow_encoded_slash: bool) -> tuple[str, bytes]:
    """Step 2 and 3: the path with only unreserved escapes decoded, and its full decoding."""
    out: list[str] = []
    full = bytearray()
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise MalformedRequest("bad_escape")
            code = int(pair, 16)
            if code == 0x2F and not allow_encoded_slash:
                raise MalformedRequest("encoded_slash")
            if code in (0x5C, 0x7F) or code < 0x20:
                raise MalformedRequest("malformed_path")
            decoded = chr(code)
            out.append(decoded if decoded in _UNRESERVED else f"%{code:02X}")
            full.append(code)
            i += 3
            continue
        if ch in _REFUSE_RAW or _control(ord(ch)):
            raise MalformedRequest("malformed_path")
        out.append(ch if ch in _KEEP else _escape_char(ch))
        full += ch.encode("utf-8", "surrogatepass")
        i += 1
    return "".join(out), bytes(full)


def _merge_slashes(path: str) -> str:
    while "//" in path:
        path = path.replace("//", "/")
    return path


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path (leading "/")."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
            continue
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    return "/" + "/".join(out)


def _lower(path: str) -> str:
    lowered = path.lower()
    return _ESCAPE_LOWER.sub(lambda m: m.group(0).upper(), lowered) if "%" in path else lowered


def canonical_path(raw: str, *, allow_encoded_slash: bool = False, lowercase: bool = False) -> str:
    """The canonical form of ``raw`` (a path without its query); MalformedRequest if ambiguous."""
    if not raw:
        return "/"
    if _PLAIN.fullmatch(raw) and "//" not in raw and "/." not in raw:
        return raw.lower() if lowercase else raw
    if not raw.startswith("/"):
        raise MalformedRequest("malformed_path")
    path, full = _decode_unreserved(raw, allow_encoded_slash)
    try:
        text = full.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("invalid_utf8") from exc
    if any(_control(ord(ch)) for ch in text):
        raise MalformedRequest("malformed_path")
    path = _remove_dot_segments(_merge_slashes(path))
    return _lower(path) if lowercase else path


def wire_text(raw: bytes) -> str:
    """Bytes of a request target as text: strict UTF-8 (MalformedRequest otherwise)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("invalid_utf8") from exc


_HOST = re.compile(
    r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::(?P<port>[0-9]{0,5}))?"
)


@functools.lru_cache(maxsize=1024)  # a PDP sees the same few hosts over and over
def canonical_host(raw: str) -> str:
    """``Host`` without port and trailing dot, lower-cased; MalformedRequest if it is no host."""
    if not raw:
        return ""
    match = _HOST.fullmatch(raw)
    if match is None:
        raise MalformedRequest("bad_host")
    name = match.group("name").lower()
    if name.endswith(".") and not name.startswith("["):
        name = name[:-1]
    return name


# Headers with exactly one meaning: a repeated one is refused, never joined.
SINGLE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "host",
        ":authority",
        ":method",
        ":path",
        "x-forwarded-client-cert",
        "x-forwarded-host",
        "x-forwarded-method",
        "x-forwarded-uri",
        "x-original-host",
        "x-original-method",
        "x-original-uri",
    }
)
_SINGLE_PREFIX = "x-meshward-"


def join_headers(items: Iterable[tuple[str, str]], limit: int = 512) -> dict[str, str]:
    """One value per lower-case header name, repeated fields joined with ``,`` (RFC 9110 §5.3).

    A repeated :data:`SINGLE_HEADERS` or ``x-meshward-*`` header, or more than
    ``limit`` fields, is a :class:`MalformedRequest`.
    """
    out: dict[str, str] = {}
    for count, (key, value) in enumerate(items, start=1):
        if count > limit:
            raise MalformedRequest("too_many_headers")
        name = key.lower()
        if name in out:
            if name in SINGLE_HEADERS or name.startswith(_SINGLE_PREFIX):
                raise MalformedRequest("repeated_header")
            out[name] = f"{out[name]},{value}"
        else:
            out[name] = value
    return out
