"""Runs the CA as ``ca serve --workers N``: N processes of :class:`ca.server.CaServer`.

The processes share the port with ``SO_REUSEPORT`` (the kernel spreads
connections over them), as the PDP's do, through
:func:`meshward.workers.run_workers` (spawn, forward signals, die with the
parent). They are one replica: one store, one signing CA; rotation is taken
in turns under the authority's lease; metrics are summed over them.
"""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from ca.errors import CaError
from ca.server import CaServer
from ca.service import CertificateAuthority
from meshward.workers import run_workers

__all__ = ["Opener", "run"]

log = logging.getLogger("meshward.ca")

Opener = Callable[[], CertificateAuthority]


def _serve_one(open_ca: Opener, addr: str, workdir: Path, bundle: Path | None, reuse: bool) -> None:
    import uvloop  # noqa: PLC0415

    server = CaServer(open_ca(), addr, workdir, bundle, reuse_port=reuse)
    uvloop.run(server.serve())


def _worker(
    open_ca: Opener,
    addr: str,
    workdir: Path,
    bundle: Path | None,
    logging_setup: Callable[[], None],
    index: int,
) -> None:
    logging_setup()
    try:
        _serve_one(open_ca, addr, workdir / f"w{index}", bundle, True)
    except KeyboardInterrupt:
        pass
    except CaError as exc:
        log.error("worker cannot start", extra={"fields": {"worker": index, "error": str(exc)}})
        raise SystemExit(2) from exc


def run(
    open_ca: Opener,
    addr: str,
    workdir: Path,
    bundle: Path | None,
    workers: int,
    metrics_dir: Path,
    logging_setup: Callable[[], None] = lambda: None,
) -> int:
    """Serve with ``workers`` processes on ``addr`` until SIGINT/SIGTERM; the exit code.

    ``open_ca`` (picklable: the workers are spawned) opens the CA in each
    worker; with several workers the samples of every worker go to
    ``metrics_dir`` and ``/metrics`` answers with their sum; ``logging_setup``
    (picklable too) configures each worker's logging.
    """
    if workers == 1:
        _serve_one(open_ca, addr, workdir, bundle, False)
        return 0
    target = functools.partial(_worker, open_ca, addr, workdir, bundle, logging_setup)
    # SIGINT: uvicorn drains in-flight requests, then the worker exits 0.
    return run_workers(target, workers, metrics_dir, stop_signal=signal.SIGINT)
