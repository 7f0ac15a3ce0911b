"""Prometheus plumbing shared by the PDP and the CA: rendering, and multi-process mode.

With ``--workers N`` the PDP runs N processes behind one port, so a scrape
lands on any one of them. prometheus_client's multi-process mode makes every
worker write its samples to memory-mapped files in one directory, and
:func:`render` then merges all workers' files into one answer.

The mode is chosen by the ``PROMETHEUS_MULTIPROC_DIR`` environment variable,
read by prometheus_client when a process first imports it — which is why the
PDP sets it (with :func:`enable_multiprocess`) in the parent *before* it
spawns the workers, and never in a process that already made metrics.

Each run gets its own directory, ``<state_dir>/metrics/<run id>``, created
empty, so the counts of a previous run are never added to this one's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "enable_multiprocess",
    "mark_worker_dead",
    "multiprocess_dir",
    "prepare_run_dir",
    "render",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def prepare_run_dir(state_dir: Path, run_id: str) -> Path:
    """Create ``<state_dir>/metrics/<run_id>`` empty, removing earlier runs' directories."""
    if not run_id or "/" in run_id or run_id in {".", ".."}:
        raise ValueError(f"bad run id {run_id!r}")
    root = state_dir / "metrics"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in root.iterdir():
        if old.is_dir() and old.name != run_id:
            shutil.rmtree(old, ignore_errors=True)
    run_dir = root / run_id
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(mode=0o700)
    return run_dir


def enable_multiprocess(directory: Path, environ: MutableMapping[str, str]) -> None:
    """Point processes started from ``environ`` at ``directory`` for their samples."""
    environ[MULTIPROC_ENV] = str(directory)


def multiprocess_dir(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """The directory of this process's multi-process samples, or ``None`` when off."""
    value = (os.environ if environ is None else environ).get(MULTIPROC_ENV)
    return Path(value) if value else None


def render(registry: CollectorRegistry, local: Sequence[Collector] = ()) -> bytes:
    """The text exposition of ``registry`` — of all workers' samples in multi-process mode.

    ``local`` are collectors that read this process's state at scrape time
    (registered on ``registry`` too); multi-process mode cannot merge them, so
    they are rendered as this worker sees them, beside the merged samples.
    """
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(registry)
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=str(directory))  # type: ignore[no-untyped-call]
    for collector in local:
        merged.register(collector)
    return generate_latest(merged)


def mark_worker_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (its counters still count)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
