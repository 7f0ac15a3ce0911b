"""One checking child process: a bundle check with time and memory limits, dying with its parent.

The PDP checks policy bundles out of the serving process (Cedar holds the GIL
for seconds on a large set). :class:`CheckerProcess` is that child, talked to
over its stdin and stdout (length-prefixed pickles of
``(root, version, held digests)`` → :class:`~authz.sources.bundles.Checked`,
the answer pickled as a delta against the pieces the parent says it holds:
:mod:`authz.sources.delta`). It is a plain ``subprocess`` — no
``multiprocessing`` — so no resource-tracker process is started beside it.

Limits (``policy_source.prepare_timeout_seconds``,
``policy_source.prepare_memory_mb``):

- **time**: a check that has not answered within the timeout is killed
  (:class:`PrepareTimeout`);
- **memory**: the child's address space is capped with ``RLIMIT_AS`` once it
  has started; a check that hits the cap fails (:class:`PrepareMemory`), or
  the child dies (:class:`PrepareCrashed`).

Either way the caller treats the version as failed; the next check starts a
new child.

The child runs at a lower CPU priority (``nice`` 10): on a busy machine the
serving process's checks come first. It keeps a
:class:`~authz.engine.statementcache.StatementCache` for its life; its
cyclic garbage collector runs once after each answer is sent (not during a
check), then freezes what survives. Children die with their parent: the
child asks the kernel for ``SIGKILL`` when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, Linux), checks that the parent it was started
by is still there, and exits when its stdin — the pipe from the parent —
reaches end of file. ``kill -9`` of the PDP leaves nothing
behind.

Errors (drawn in :mod:`authz.errors`, below ``SourceError``)::

    PrepareFailed       the check did not complete; ``code`` names why
        PrepareTimeout  code "prepare_timeout"
        PrepareMemory   code "prepare_memory"
        PrepareCrashed  code "prepare_crashed" (the child died mid-check)
        PrepareBaseMismatch  code "prepare_base_mismatch" (the answer names a piece
                        the parent does not hold; the child lives, ask again in full)
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from authz.errors import (
    PrepareBaseMismatch,
    PrepareCrashed,
    PrepareFailed,
    PrepareMemory,
    PrepareTimeout,
)
from meshward.workers import die_with_parent

__all__ = [
    "CheckerProcess",
    "GcPause",
    "PrepareCrashed",
    "PrepareFailed",
    "PrepareMemory",
    "PrepareTimeout",
    "main",
]

_HEADER = struct.Struct(">Q")
_MAX_FRAME = 1 << 34  # 16 GiB: a corrupt header, not a result


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(fd: int, size: int, deadline: float | None) -> bytearray | None:
    """``size`` bytes from ``fd``; ``None`` at end of file; ``TimeoutError`` past ``deadline``.

    Read in place into one buffer (each read without the GIL): an answer of
    many megabytes is never copied again to be joined.
    """
    data = bytearray(size)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    with memoryview(data) as view:
        got = 0
        while got < size:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                if not poller.poll(remaining * 1000):
                    raise TimeoutError
            count = os.readv(fd, [view[got : got + (1 << 20)]])
            if not count:
                return None
            got += count
    return data


def _read_frame(fd: int, deadline: float | None) -> bytearray | None:
    """One frame's bytes; ``None`` at end of file."""
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise ValueError("corrupt frame from the checking process")
    return _read_exact(fd, size, deadline)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports exactly what this process imports.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class CheckerProcess:
    """The parent's handle on the checking child; one check at a time (thread-safe)."""

    def __init__(
        self,
        *,
        timeout: float = 120.0,
        memory_bytes: int = 0,
        receiving: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        """``receiving``: a context entered while an answer is decoded (see :class:`GcPause`)."""
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._receiving = receiving
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.last_answer_bytes = 0  # the size of the last answer (a delta: see check)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from authz.sources.childproc import main; main()",
                str(os.getpid()),
                str(self.memory_bytes),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            close_fds=True,
        )

    def _running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self._reap(proc)
            proc = self._proc = self._start()
        return proc

    def check(self, root: Path, version: str, held: Mapping[bytes, Any] | None = None) -> Any:
        """The child's answer for ``(root, version)`` (raises :class:`PrepareFailed`).

        ``held``: the pieces this process holds, by digest
        (:func:`authz.sources.delta.pieces_of`); the answer names them
        instead of sending them again. :class:`PrepareBaseMismatch` if the
        answer names one ``held`` lacks (the child stays).
        """
        held = held if held is not None else {}
        job = pickle.dumps((str(root), version, tuple(held)), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            for attempt in (1, 2):
                proc = self._running()
                if proc.stdin is None or proc.stdout is None:  # pragma: no cover - PIPE given
                    raise PrepareCrashed("the checking process has no pipes")
                try:
                    _write_frame(proc.stdin, job)
                except (BrokenPipeError, OSError):
                    # Dead before it was given this version: not the version's fault.
                    self._kill(proc)
                    if attempt == 2:
                        raise PrepareCrashed("the checking process cannot start") from None
                    continue
                return self._answer(proc, held)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, proc: subprocess.Popen[bytes], held: Mapping[bytes, Any]) -> Any:
        from authz.sources import delta  # noqa: PLC0415 - the child imports this module first

        if proc.stdout is None:  # pragma: no cover - PIPE given
            raise PrepareCrashed("the checking process has no pipes")
        deadline = time.monotonic() + self.timeout
        try:
            data = _read_frame(proc.stdout.fileno(), deadline)
            if data is None:
                code = self._kill(proc)
                raise PrepareCrashed(f"the checking process died (exit status {code})")
            self.last_answer_bytes = len(data)
            with self._receiving():
                reply = delta.loads(data, held)
        except PrepareBaseMismatch:
            raise  # the whole frame was read: the child is in step, ask again
        except TimeoutError:
            self._kill(proc)
            raise PrepareTimeout(f"the check took longer than {self.timeout:g}s") from None
        except (ValueError, pickle.UnpicklingError, EOFError) as exc:
            self._kill(proc)
            raise PrepareCrashed("the checking process answered garbage") from exc
        kind, value = reply
        if kind == "ok":
            return value
        if kind == "memory":
            self._kill(proc)  # its heap may be fragmented past use; start afresh
            raise PrepareMemory(f"the check needed more than {self.memory_bytes >> 20} MiB")
        raise RuntimeError(f"the check failed in the child: {value}")

    def _kill(self, proc: subprocess.Popen[bytes]) -> int | None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        code = self._reap(proc)
        if self._proc is proc:
            self._proc = None
        return code

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> int | None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was sent
            return None

    def close(self) -> None:
        """End the child: end of its input, then ``SIGKILL`` if it lingers."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        self._reap(proc)


class GcPause:
    """Keeps a new version's activation out of the serving checks' way.

    Two contexts, both counted (nested and concurrent uses end when the last
    one does, and restore what was there before the first):

    - :meth:`quick_switches`, for the whole of an activation's work in the
      serving process (fetching, writing out, waiting for the child,
      building): a thread holding the GIL hands it over every
      ``switch_interval`` seconds instead of every 5 ms, so a due check never
      waits long behind Python code in the gate's worker thread;
    - :meth:`paused`, for decoding the answer and building the engine (it
      implies quick switches): building allocates many objects and the cyclic
      collector would walk the whole heap meanwhile (tenths of a second
      holding the GIL), so it is held back.

    :meth:`freeze` then moves everything alive — the new engine — out of the
    collector's reach for good (``gc.freeze``), so later collections stay short.
    """

    def __init__(self, switch_interval: float = 0.0002) -> None:
        self._lock = threading.Lock()
        self._switching = 0
        self._interval = sys.getswitchinterval()
        self._switch_interval = switch_interval
        self._pausing = 0
        self._resume = False

    @contextlib.contextmanager
    def quick_switches(self) -> Iterator[None]:
        with self._lock:
            if self._switching == 0:
                self._interval = sys.getswitchinterval()
                sys.setswitchinterval(min(self._interval, self._switch_interval))
            self._switching += 1
        try:
            yield
        finally:
            with self._lock:
                self._switching -= 1
                if self._switching == 0:
                    sys.setswitchinterval(self._interval)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self.quick_switches():
            with self._lock:
                if self._pausing == 0:
                    self._resume = gc.isenabled()
                    gc.disable()
                self._pausing += 1
            try:
                yield
            finally:
                with self._lock:
                    self._pausing -= 1
                    if self._pausing == 0 and self._resume:
                        gc.enable()

    def freeze(self) -> None:
        gc.freeze()


# -- the child --------------------------------------------------------------------------------


def _limit_memory(limit: int) -> None:
    if limit <= 0:
        return
    import resource  # noqa: PLC0415 - POSIX only, child only

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    """The child's loop: one ``(root, version)`` in, one answer out, until stdin ends."""
    parent, limit = int(sys.argv[1]), int(sys.argv[2])
    if not die_with_parent(signal.SIGKILL, parent):
        os._exit(0)
    with contextlib.suppress(OSError):
        os.nice(10)  # the serving process's checks come first on a busy machine
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    from authz.engine.statementcache import StatementCache  # noqa: PLC0415 - after the signal
    from authz.sources import delta  # noqa: PLC0415 - after the death signal
    from authz.sources.bundles import check_bundle  # noqa: PLC0415 - after the death signal

    _limit_memory(limit)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answer pipe
    cache = StatementCache()  # statements checked before, for the life of this process
    while True:
        frame = _read_frame(stdin.fileno(), None)
        if frame is None:
            return
        root, version, held = pickle.loads(frame)  # noqa: S301 - our parent, over a private pipe
        reply: tuple[str, Any]
        # The cyclic collector would walk the cache's objects again and again
        # while a check allocates; it runs once per check, and what survives
        # (the cache) is then frozen out of its reach.
        gc.disable()
        try:
            reply = ("ok", check_bundle(Path(root), version, cache))
        except MemoryError:
            reply = ("memory", None)
        except Exception as exc:  # the parent rejects the version (fail closed)
            reply = ("error", type(exc).__name__)
        # Every piece the parent holds crosses as its digest only: a delta.
        answer = delta.dumps(reply, frozenset(held))
        # Cleaning up before answering, not after: while this process frees
        # the check's objects the serving process only waits, but the moment
        # it has the answer it builds the new engine, and the serving checks
        # then need the other core for themselves.
        del reply
        gc.collect()
        gc.freeze()
        _write_frame(stdout, answer)
        del answer
