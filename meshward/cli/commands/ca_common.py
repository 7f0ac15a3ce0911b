"""What the ``meshward ca`` commands share: durations, SPIFFE ID arguments, opening the CA."""

from __future__ import annotations

import os
import re

import typer

from ca.errors import CaError
from ca.service import Caller, CertificateAuthority
from ca.wiring import open_ca
from meshward.cli.commands.common import fail
from meshward.settings import Settings
from meshward.spiffe import InvalidSpiffeId, SpiffeId

__all__ = ["cli_caller", "open_or_exit", "parse_duration", "spiffe_id_arg"]

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) <= 0:
        raise typer.BadParameter(f"expected a duration like 90s, 15m, 1h or 7d, got {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def cli_caller() -> Caller:
    """Who the audit log names for commands run on the CA host."""
    return Caller(address="cli")


def spiffe_id_arg(value: str) -> SpiffeId:
    """A SPIFFE ID option's value, or a usage error (exit 2)."""
    try:
        return SpiffeId.parse(value)
    except InvalidSpiffeId as exc:
        raise typer.BadParameter(str(exc)) from exc


def open_or_exit(settings: Settings, *, serve: bool = False) -> CertificateAuthority:
    """The CA of these settings, or its error printed and exit 2."""
    try:
        return open_ca(settings, os.environ, serve=serve)
    except CaError as exc:
        fail(str(exc))
