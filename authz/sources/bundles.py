"""The gate's ``prepare`` for Cedar bundles: load, validate, test, build the engine.

A version passes when :func:`authz.engine.bundle.read_bundle` finds no problem (every
policy parses, validates against the schema, the entities and test files
load) and every case of :func:`authz.lifecycle.policytest.run_tests` passes; anything
else raises :class:`~authz.errors.Rejected` with every problem.

:func:`check_bundle` is that whole check, and returns plain picklable values
(:class:`Checked`). It is the one code path, used two ways:

- :func:`prepare_engine` runs it in the calling process (the CLI, tests);
- :class:`ProcessPreparer` runs it in a child process (the PDP): Cedar holds
  the GIL for every call on the whole policy set (seconds at 10,000 policies),
  so doing it beside the live checks would stall them all. The child keeps a
  :class:`~authz.engine.statementcache.StatementCache`, so a new version is
  parsed and validated only where its statements changed. The serving process
  only builds the engine from the result, which arrives ready: the policies
  as columns (:class:`~authz.engine.policytable.PolicyTable`, each policy's
  JSON decoded on first use) and the scope index built in the child
  (:class:`~authz.engine.slicing.ScopeIndex`, decoded a chunk at a time). It
  never calls Cedar on the whole set (:func:`authz.engine.bundle.bundle_from_data`).
  The result arrives as a delta against the last bundle the serving process
  built (:mod:`authz.sources.delta`): the blocks of policies and index shards
  it already holds are named, not sent, so a one-policy change of 10,000 is
  kilobytes, and the new engine shares those pieces with the active one
  without changing it.

A check that runs past its time limit, hits its memory limit or kills the
child rejects that version at stage ``"prepare"``: the last good version keeps
serving, the gate remembers the rejection (a new commit, or an explicit
refresh, tries again), and the next check starts a new child. A child found
dead before it was given a version is simply replaced.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from authz.engine.bundle import BundleData, bundle_from_data, read_bundle
from authz.engine.evaluation import Engine
from authz.engine.pieces import Piece
from authz.engine.statementcache import StatementCache
from authz.errors import BundleError, PrepareBaseMismatch, Problem, Rejected, SourceError
from authz.lifecycle.policytest import run_tests
from authz.sources.childproc import CheckerProcess, GcPause, PrepareFailed
from authz.sources.delta import pieces_of

__all__ = ["Checked", "ProcessPreparer", "check_bundle", "prepare_engine"]


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of :func:`check_bundle`: the content, or the stage and every problem."""

    data: BundleData | None
    stage: str
    problems: tuple[Problem, ...]
    pid: int  # the process that did the checking


def check_bundle(root: Path, version: str, cache: StatementCache | None = None) -> Checked:
    """Read, validate and test the bundle in ``root``; never raises for a bad bundle.

    ``cache``: what earlier checks learnt about each policy statement (the
    checking child keeps one for its life), so a version that changes a few
    policies of many is parsed and validated a few policies' worth.
    """
    pid = os.getpid()
    try:
        data = read_bundle(root, version=version, cache=cache)
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


def engine_from(checked: Checked, previous: Engine | None = None) -> Engine:
    """The engine of a checked bundle, or :class:`Rejected` with its problems.

    ``previous``: an engine whose slices of shared policies the new one takes over.
    """
    if checked.data is None:
        raise Rejected(checked.problems, stage=checked.stage)
    try:
        bundle = bundle_from_data(checked.data, previous.bundle if previous is not None else None)
    except BundleError as exc:
        raise Rejected(exc.problems, stage="bundle") from exc
    return Engine(bundle, previous=previous)


def prepare_engine(root: Path, version: str) -> Engine:
    """The engine of the bundle in ``root`` stamped ``version``, if it passes the gate."""
    return engine_from(check_bundle(root, version))


class ProcessPreparer:
    """A gate ``prepare`` that checks bundles in one child process, with limits.

    The child (:class:`~authz.sources.childproc.CheckerProcess`) is started on
    first use, reused for every later version, and ended by :meth:`close`; it
    dies with this process. Calls block the calling thread (the gate runs
    ``prepare`` in a worker thread), never the event loop. ``last_pid`` is the
    child that checked the last bundle.

    A check that runs past ``timeout`` seconds, needs more than
    ``memory_bytes`` of address space, or kills the child is a rejection at
    stage ``"prepare"`` (codes ``prepare_timeout``, ``prepare_memory``,
    ``prepare_crashed``): the gate remembers it and does not try that version
    again on every poll.

    A new engine takes over the slices of the last one built, if it is still
    alive, for the policies they share (:class:`~authz.engine.evaluation.Engine`).

    Each request names the pieces of the last two bundles this preparer
    built (the active version and the one before it, or the main and the
    shadow gate's); the answer is a delta against them. Only a bundle an
    engine was built from becomes a base: a rejected version, a failed check
    or an answer that could not be built leaves them as they were. An answer
    that names a piece not held (never expected) is asked for again in full.

    :meth:`background` is for the gate's worker thread around a whole
    activation (``Gate(background=...)``): the thread hands the GIL over
    often while it fetches, writes out and waits (:class:`GcPause`).
    """

    def __init__(self, *, timeout: float = 120.0, memory_bytes: int = 0) -> None:
        self._gc = GcPause()
        self._child = CheckerProcess(
            timeout=timeout, memory_bytes=memory_bytes, receiving=self._gc.paused
        )
        self._closed = False
        self._bases: list[dict[bytes, Piece]] = []  # the pieces of the last two bundles built
        self._last_engine: weakref.ref[Engine] | None = None  # its slices may be taken over
        self.last_pid: int | None = None
        self.last_full = True  # whether the last answer was asked for in full

    @property
    def last_answer_bytes(self) -> int:
        """The size of the child's last answer (a delta but for the first)."""
        return self._child.last_answer_bytes

    def __call__(self, root: Path, version: str) -> Engine:
        if self._closed:
            raise SourceError("the policy checker is shut down", code="prepare_closed")
        try:
            checked = self._ask(root, version)
        except PrepareFailed as exc:
            problem = Problem("", 0, 0, exc.code, str(exc))
            raise Rejected([problem], stage="prepare") from exc
        if not isinstance(checked, Checked):
            raise TypeError("unexpected answer from the checking process")
        self.last_pid = checked.pid
        previous = self._last_engine() if self._last_engine is not None else None
        with self._gc.paused():
            engine = engine_from(checked, previous)
            if checked.data is not None:  # a base of the next answers
                self._bases = [pieces_of(checked.data), *self._bases][:2]
            self._gc.freeze()  # the new engine lives long: keep the collector off it
        self._last_engine = weakref.ref(engine)
        return engine

    def background(self) -> AbstractContextManager[object]:
        """Entered around an activation's work in the serving process (see the class)."""
        return self._gc.quick_switches()

    @property
    def _held(self) -> Mapping[bytes, Piece]:
        if len(self._bases) == 1:
            return self._bases[0]
        return {digest: piece for base in reversed(self._bases) for digest, piece in base.items()}

    def _ask(self, root: Path, version: str) -> object:
        held = self._held
        self.last_full = not held
        try:
            return self._child.check(root, version, held)
        except PrepareBaseMismatch:
            self._bases = []
            self.last_full = True
            return self._child.check(root, version, {})

    def close(self) -> None:
        """End the child process (waits for a check in progress)."""
        self._closed = True
        self._child.close()
