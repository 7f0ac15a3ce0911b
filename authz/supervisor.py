"""Runs the PDP as ``--workers`` processes: one serves, several are supervised.

:func:`run` serves in this process when ``pdp.workers`` is 1; otherwise it
checks the configuration and the policies once, before spawning, so a bad
start is one clear error rather than N, and hands the worker processes to
:func:`meshward.workers.run_workers` (spawn, forward SIGTERM/SIGINT, wait).
Each worker configures its logging, dies with its parent (run_workers asks
the kernel), and serves with
:func:`authz.server.serve` on the shared ports.

Errors (below :class:`authz.errors.AuthzError`)::

    PdpError            code "pdp_start" (bad configuration or policies: exit 2)
"""

from __future__ import annotations

import functools
import logging
import os
import signal

from authz.errors import PdpError, SourceError
from authz.server import serve
from authz.sources.runtime import check_policies, for_worker
from meshward.metrics import prepare_run_dir
from meshward.settings import Settings
from meshward.workers import run_workers

__all__ = ["PdpError", "run"]

log = logging.getLogger(__name__)


def _run_one(settings: Settings, announce: bool) -> None:
    import uvloop  # noqa: PLC0415

    uvloop.run(serve(settings, announce))


def _worker(settings: Settings, index: int) -> None:  # index last: run_workers passes it
    from meshward.logs import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_format, settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    try:
        _run_one(for_worker(settings, index), announce=index == 0)
    except PdpError as exc:
        log.error("worker cannot start", extra={"fields": {"worker": index, "error": str(exc)}})
        raise SystemExit(2) from exc


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code (:class:`PdpError` at start)."""
    workers = settings.pdp.workers
    if workers == 1:
        _run_one(settings, announce=True)
        return 0
    # Check the configuration and the policies once, before forking, so a bad
    # start is one clear error rather than N (unless told to wait for policies).
    if not settings.pdp.wait_for_policies:
        try:
            check_policies(settings)
        except SourceError as exc:
            raise PdpError(str(exc)) from exc
    # Workers share one /metrics: each writes its samples to files in this
    # run's directory, and any of them answers a scrape with the sum.
    run_dir = prepare_run_dir(settings.state_dir, f"pdp-{os.getpid()}")
    return run_workers(functools.partial(_worker, settings), workers, run_dir)
