"""The gate's ``prepare`` for Cedar bundles: load, validate, test, build the engine.

A version passes when :func:`authz.bundle.read_bundle` finds no problem (every
policy parses, validates against the schema, the entities and test files
load) and every case of :func:`authz.policytest.run_tests` passes; anything
else raises :class:`~authz.sources.errors.Rejected` with every problem.

:func:`check_bundle` is that whole check, and returns plain picklable values
(:class:`Checked`). It is the one code path, used two ways:

- :func:`prepare_engine` runs it in the calling process (the CLI, tests);
- :class:`ProcessPreparer` runs it in a child process (the PDP): Cedar holds
  the GIL for every call on the whole policy set (seconds at 10,000 policies),
  so doing it beside the live checks would stall them all. The serving process
  only builds the engine from the result: it never calls Cedar on the whole set
  (:func:`authz.bundle.bundle_from_data`).

A child that dies (killed, out of memory) fails that preparation with a
:class:`~authz.sources.errors.SourceError` coded ``prepare_crashed``: the last
good version keeps serving, and the next reload starts a new child and tries
the version again.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from authz.bundle import BundleData, bundle_from_data, read_bundle
from authz.engine import Engine
from authz.errors import BundleError, Problem
from authz.policytest import run_tests
from authz.sources.errors import Rejected, SourceError

__all__ = ["Checked", "ProcessPreparer", "check_bundle", "prepare_engine"]


def _ignore_interrupts() -> None:
    """The checker child leaves Ctrl-C to its parent, which shuts it down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of :func:`check_bundle`: the content, or the stage and every problem."""

    data: BundleData | None
    stage: str
    problems: tuple[Problem, ...]
    pid: int  # the process that did the checking


def check_bundle(root: Path, version: str) -> Checked:
    """Read, validate and test the bundle in ``root``; never raises for a bad bundle."""
    pid = os.getpid()
    try:
        data = read_bundle(root, version=version)
        bundle = bundle_from_data(data)
    except BundleError as exc:
        return Checked(None, "bundle", tuple(exc.problems), pid)
    report = run_tests(bundle, Engine(bundle))
    if not report.ok:
        failures = tuple(
            Problem(r.file, r.case.line, 1, "test-failed", f"{r.case.name}: {r.failure}")
            for r in report.results
            if r.failure is not None
        )
        return Checked(None, "test", failures, pid)
    return Checked(data, "", (), pid)


def engine_from(checked: Checked) -> Engine:
    """The engine of a checked bundle, or :class:`Rejected` with its problems."""
    if checked.data is None:
        raise Rejected(checked.problems, stage=checked.stage)
    try:
        bundle = bundle_from_data(checked.data)
    except BundleError as exc:
        raise Rejected(exc.problems, stage="bundle") from exc
    return Engine(bundle)


def prepare_engine(root: Path, version: str) -> Engine:
    """The engine of the bundle in ``root`` stamped ``version``, if it passes the gate."""
    return engine_from(check_bundle(root, version))


class ProcessPreparer:
    """A gate ``prepare`` that checks bundles in one child process.

    The child is started on first use (``spawn``: nothing of the serving
    process's threads or sockets is inherited) and ended by :meth:`close`.
    Calls block the calling thread (the gate runs ``prepare`` in a worker
    thread), never the event loop. ``last_pid`` is the child that checked the
    last bundle.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self.last_pid: int | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise SourceError("the policy checker is shut down", code="prepare_closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_ignore_interrupts,
                )
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def __call__(self, root: Path, version: str) -> Engine:
        pool = self._executor()
        try:
            checked = pool.submit(check_bundle, root, version).result()
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise SourceError(
                "the policy checker process died; the version is tried again on the next reload",
                code="prepare_crashed",
            ) from exc
        self.last_pid = checked.pid
        return engine_from(checked)

    def close(self) -> None:
        """End the child process (waits for a check in progress)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
