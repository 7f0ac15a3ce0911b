"""Where the CA's key passphrase comes from: one rule for every command.

In order:

1. ``ca.passphrase_file`` (``MESHWARD_CA__PASSPHRASE_FILE``), when set;
2. the ``MESHWARD_CA_PASSPHRASE`` environment variable, when set;
3. ``<state-dir>/ca-passphrase``, the file ``meshward up`` generates (0600)
   when it creates a CA and neither of the above is set.

So every ``meshward ca …`` command run with the same ``--state-dir`` after
``meshward up`` finds the passphrase ``up`` created, and an operator who
configures a passphrase explicitly always gets that one. The generated file
is a laptop convenience: anyone who can read the state directory can read
it; production gives the passphrase from a secret file or the environment.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from ca.errors import MissingPassphrase
from ca.keystore import MIN_PASSPHRASE, PASSPHRASE_ENV, write_private_file
from meshward.settings import Settings

__all__ = ["GENERATED_FILE", "ca_passphrase", "generated_passphrase_file"]

GENERATED_FILE = "ca-passphrase"


def generated_passphrase_file(settings: Settings) -> Path:
    """``<state-dir>/ca-passphrase``: where ``meshward up`` keeps the passphrase it made."""
    return settings.state_dir / GENERATED_FILE


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise MissingPassphrase(f"cannot read passphrase file {path}: {exc.strerror}") from exc


def ca_passphrase(settings: Settings, env: Mapping[str, str], *, generate: bool = False) -> bytes:
    """The CA passphrase by the rule above; ``generate`` (``up``) creates the state file.

    Raises :class:`~ca.errors.MissingPassphrase` when there is none (the message
    says where it was looked for) or it is shorter than the minimum.
    """
    generated = generated_passphrase_file(settings)
    if settings.ca.passphrase_file is not None:
        value = _read(settings.ca.passphrase_file)
    elif env.get(PASSPHRASE_ENV):
        value = env[PASSPHRASE_ENV].encode("utf-8")
    elif generated.exists():
        value = _read(generated)
    elif generate:
        value = secrets.token_urlsafe(32).encode("ascii")
        write_private_file(generated, value)
    else:
        raise MissingPassphrase(
            f"no CA passphrase: set {PASSPHRASE_ENV} or ca.passphrase_file, or run with the"
            f" --state-dir that `meshward up` used (it keeps one in {generated})"
        )
    if len(value) < MIN_PASSPHRASE:
        raise MissingPassphrase(f"the CA passphrase must have at least {MIN_PASSPHRASE} bytes")
    return value
