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

__all__ = ["die_with_parent", "run_workers"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int, parent: int) -> bool:
    """Ask the kernel for ``signum`` when this process's parent dies (Linux); whether
    ``parent`` (the pid that started this process) is still its parent.

    False means the parent died before the request was taken, so no signal will
    come: the caller should exit. The signal follows the death of the parent
    *thread* that started this process.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    return os.getppid() == parent


def _worker_main(target: Callable[[int], None], stop_signal: int, parent: int, index: int) -> None:
    if die_with_parent(stop_signal, parent):
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
    main = functools.partial(_worker_main, target, stop_signal, os.getpid())
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
