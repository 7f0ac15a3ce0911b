"""The policy side of a running PDP, wired from settings in one place.

:func:`build_policy_runtime` assembles, without starting anything: the source
(directory or Git) and its gate (which checks bundles in a child process, see
:class:`~authz.sources.bundles.ProcessPreparer`), which swaps every activated engine into the
decider's engine holder; the Redis announcer when ``pdp.redis_url`` is set;
the shadow source, gate and comparator when ``policy_source.shadow`` is set;
the decision log when ``decision_log.path`` is set; the ``/v1/policies``
router and the metrics collector. :meth:`PolicyRuntime.start` activates the
first version (raising ``SourceError`` when there is none to serve) and
starts the poll loops; :meth:`PolicyRuntime.stop` ends them, ends the
checking child process and flushes the decision log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter

from authz.adapters.activepolicies import policies_router
from authz.cache.redis import RedisClient, open_redis
from authz.cache.wiring import redis_options
from authz.engine.decider import DecisionRecord, EngineHolder
from authz.engine.evaluation import Engine
from authz.engine.model import Decision, Effect
from authz.engine.retire import retire
from authz.errors import SourceError
from authz.lifecycle.shadow import Shadow
from authz.observe.decisionlog import DecisionLog, open_sink
from authz.observe.sourcemetrics import PolicyCollector
from authz.sources.announce import RedisAnnouncer
from authz.sources.bundles import ProcessPreparer, prepare_engine
from authz.sources.factory import make_source, webhook_secret, work_dir_for
from authz.sources.gate import Gate, PolicyStatus
from meshward.clock import Clock, SystemClock
from meshward.settings import Settings

__all__ = [
    "PolicyRuntime",
    "ShadowObserver",
    "build_policy_runtime",
    "check_policies",
    "for_worker",
]

log = logging.getLogger(__name__)


class ShadowObserver:
    """A decider observer that hands every live decision to the shadow comparator."""

    def __init__(self, shadow: Shadow) -> None:
        self._shadow = shadow

    def observe(self, record: DecisionRecord) -> None:
        if record.request is None or record.decision not in ("allow", "deny"):
            return
        decision = Decision(Effect(record.decision), record.reasons, record.errors, record.version)
        self._shadow.observe(record.request, decision)


@dataclass
class PolicyRuntime:
    gate: Gate[Engine]
    router: APIRouter
    collector: PolicyCollector
    observers: list[Any]
    decision_log: DecisionLog | None = None
    announcer: RedisAnnouncer | None = None
    shadow_gate: Gate[Engine] | None = None
    shadow: Shadow | None = None
    redis: RedisClient | None = None
    preparer: ProcessPreparer | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, wait: bool = False) -> None:
        """Activate the first version, then poll and listen in the background.

        With nothing to activate: raise :class:`SourceError`, or, when ``wait``,
        log why and keep following the source until a version passes the gate.
        """
        if self.decision_log is not None:
            self.decision_log.start()
        if self.shadow is not None:
            self.shadow.start()
        await self.gate.reload()
        if self.gate.active is None:
            why = _why_nothing_active(self.gate.status())
            if not wait:
                raise SourceError(why, code="no_policies")
            log.error("waiting for policies", extra={"fields": {"error": why}})
        if self.shadow_gate is not None:
            await self.shadow_gate.reload()
            self._tasks.append(asyncio.create_task(self.shadow_gate.run()))
        self._tasks.append(asyncio.create_task(self.gate.run()))
        if self.announcer is not None:
            self._tasks.append(asyncio.create_task(self.announcer.listen(self.gate)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.preparer is not None:
            await asyncio.to_thread(self.preparer.close)
        if self.shadow is not None:
            await asyncio.to_thread(self.shadow.close)
        if self.decision_log is not None:
            await asyncio.to_thread(self.decision_log.close)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()


def _why_nothing_active(status: PolicyStatus) -> str:
    if status.last_fetch_error is not None:
        return f"no policies to serve: {status.last_fetch_error.message}"
    if status.last_rejected is not None:
        problems = "; ".join(
            f"{p.file}:{p.line}:{p.column}: {p.code}: {p.message}"
            for p in status.last_rejected.problems
        )
        return (
            f"no policies to serve: version {status.last_rejected.version} "
            f"failed the gate ({status.last_rejected.stage}): {problems}"
        )
    return "no policies to serve"


def build_policy_runtime(settings: Settings, clock: Clock, engines: EngineHolder) -> PolicyRuntime:
    """Wire the policy source, gate, announcer, shadow, decision log, router and metrics."""
    ps = settings.policy_source
    state = settings.state_dir
    source = make_source(settings.pdp.policies, ps, state)
    redis = None
    if settings.pdp.redis_url:
        # The cache tier's client factory: cluster, TLS and timeouts alike.
        options = redis_options(settings.cache, settings.pdp.redis_url)
        redis = open_redis(options, blocking_reads=True)
    announcer = RedisAnnouncer(redis, source.description) if redis is not None else None
    # Bundles are checked in a child process, so Cedar's work on a large policy
    # set never holds this process's GIL while it serves checks.
    preparer = ProcessPreparer(
        timeout=ps.prepare_timeout_seconds, memory_bytes=ps.prepare_memory_mb * 1024 * 1024
    )
    gate: Gate[Engine] = Gate(
        source,
        preparer,
        clock=clock,
        work_dir=work_dir_for(source, state),
        veto=announcer.is_rejected if announcer is not None else None,
        background=preparer.background,
    )
    # The replaced engine is freed in the background, a piece at a time.
    gate.on_activate(lambda activation: retire(engines.swap(activation.engine, activation.version)))
    if announcer is not None:
        announcer.attach(gate)

    observers: list[Any] = []
    shadow_gate: Gate[Engine] | None = None
    shadow: Shadow | None = None
    if ps.shadow:
        shadow_source = make_source(
            ps.shadow, ps, state, branch=ps.shadow_branch, subdir=ps.shadow_subdir
        )
        shadow_gate = Gate(
            shadow_source,
            preparer,
            clock=clock,
            work_dir=work_dir_for(shadow_source, state),
            background=preparer.background,
        )
        candidate = shadow_gate

        def current() -> Engine | None:
            active = candidate.active
            return active.engine if active is not None else None

        shadow = Shadow(current)
        observers.append(ShadowObserver(shadow))

    dl = settings.decision_log
    decision_log: DecisionLog | None = None
    if dl.path:
        sink = open_sink(dl.path, max_bytes=dl.max_bytes, backups=dl.backups)
        decision_log = DecisionLog(
            sink,
            sample_rate=dl.sample_rate,
            redact=dl.redact,
            headers=dl.headers,
            query_values=dl.query_values,
        )
        observers.append(decision_log)

    router = policies_router(gate, webhook_secret=webhook_secret(ps), shadow=shadow_gate)
    collector = PolicyCollector(gate, shadow=shadow, decision_log=decision_log)
    return PolicyRuntime(
        gate=gate,
        router=router,
        collector=collector,
        observers=observers,
        decision_log=decision_log,
        announcer=announcer,
        shadow_gate=shadow_gate,
        shadow=shadow,
        redis=redis,
        preparer=preparer,
    )


def check_policies(settings: Settings, clock: Clock | None = None) -> str:
    """Read and gate the configured policies once; return the version that would serve.

    Raises ``SourceError`` when nothing would (``meshward pdp serve --workers N``
    checks this once before starting its workers).
    """
    source = make_source(settings.pdp.policies, settings.policy_source, settings.state_dir)
    gate: Gate[Engine] = Gate(
        source,
        prepare_engine,
        clock=clock or SystemClock(),
        work_dir=work_dir_for(source, settings.state_dir),
    )
    asyncio.run(gate.reload())
    if gate.active is None:
        raise SourceError(_why_nothing_active(gate.status()), code="no_policies")
    return gate.active.version


def for_worker(settings: Settings, index: int) -> Settings:
    """Settings for PDP worker ``index``: its decision log file is ``PATH.<index>``.

    Worker processes never share a log file, so size-based rotation stays
    exact; stdout (``-``) is shared as it is.
    """
    path = settings.decision_log.path
    if not path or path == "-":
        return settings
    log_settings = settings.decision_log.model_copy(update={"path": f"{path}.{index}"})
    return settings.model_copy(update={"decision_log": log_settings})
