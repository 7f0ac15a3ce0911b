"""N worker processes of one server (``--workers N``), started and stopped together.

The PDP and the CA both serve with workers: spawned processes (never forked,
so no parent state leaks into them) bound to the same ports with
``SO_REUSEPORT``, their metrics summed through a multi-process directory.
The parent only starts them, forwards SIGTERM/SIGINT as ``stop_signal`` (the
signal on which the server drains gracefully), and waits. A worker asks the
kernel for ``stop_signal`` when its parent dies, so a parent killed with
SIGKILL takes its workers with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path

from meshward.metrics import enable_multiprocess, mark_worker_dead

__all__ = ["run_workers", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux).

    Returns whether the request was taken. The signal follows the death of the
    parent *thread* that started this process.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _worker_main(target: Callable[[int], None], stop_signal: int, index: int) -> None:
    set_parent_death_signal(stop_signal)
    if os.getppid() == 1:
        return  # the parent died before the request was taken
    target(index)


def run_workers(
    target: Callable[[int], None],
    count: int,
    metrics_dir: Path,
    stop_signal: int = signal.SIGTERM,
) -> int:
    """Run ``target(index)`` in ``count`` spawned processes; the worst exit code.

    ``target`` must be picklable (a module-level function or a
    ``functools.partial`` of one). The metrics variable is set before the
    workers start, so they import ``prometheus_client`` in multi-process mode.
    """
    enable_multiprocess(metrics_dir, os.environ)
    ctx = multiprocessing.get_context("spawn")
    main = functools.partial(_worker_main, target, stop_signal)
    procs = [ctx.Process(target=main, args=(i,), daemon=False) for i in range(count)]
    for proc in procs:
        proc.start()

    def forward(_signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, stop_signal)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for proc in procs:
        proc.join()
        code = max(code, proc.exitcode or 0)
        if proc.pid is not None:
            mark_worker_dead(proc.pid)
    return code
