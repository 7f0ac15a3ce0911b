"""Logging set-up: JSON lines or human text, with secrets redacted.

Components log through the standard :mod:`logging` module with structured
fields passed as ``extra={"fields": {...}}``. :func:`redact` is the one place
that decides what a secret looks like in a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

__all__ = ["REDACTED", "SECRET_KEYS", "configure_logging", "redact", "redact_url"]

REDACTED = "[redacted]"
_CHATTY = ("httpx", "httpcore")
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "token",
        "passphrase",
        "password",
        "secret",
        "key",
        "private_key",
        "x-meshward-token",
    }
)


def redact(value: Any, secret_keys: Iterable[str] = SECRET_KEYS) -> Any:
    """Return ``value`` with every mapping entry whose key names a secret redacted."""
    keys = {k.lower() for k in secret_keys}
    return _redact(value, keys)


def _redact(value: Any, keys: set[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if str(k).lower() in keys else _redact(v, keys)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, keys) for v in value]
    return value


def redact_url(url: str) -> str:
    """``url`` with its password (userinfo or a secret query parameter) redacted.

    ``postgresql://ca:s3cret@db/meshward?sslpassword=x`` becomes
    ``postgresql://ca:[redacted]@db/meshward?sslpassword=[redacted]``; a URL
    that does not parse is redacted whole.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:{REDACTED}@{host}" if sep else f"{user}@{host}"
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        secret = ("password", "passphrase", "secret", "key", "token")
        safe = [(k, REDACTED if any(w in k.lower() for w in secret) else v) for k, v in query]
        if netloc == parts.netloc and safe == query:
            return url
        return urllib.parse.urlunsplit(
            (parts.scheme, netloc, parts.path, urllib.parse.urlencode(safe, safe="[]/"), "")
        )
    except ValueError:
        return REDACTED


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(redact(fields))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in redact(fields).items())
        return line


def configure_logging(fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Route every meshward log record to ``stream`` (stderr) in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    if handler.formatter is not None:
        handler.formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # HTTP client libraries log every request at INFO (the agent polls the CA):
    # only their warnings, unless debugging.
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
