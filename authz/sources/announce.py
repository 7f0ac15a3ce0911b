"""Replicas converge: activations and rejections are announced on Redis.

Every PDP replica gates the same source on its own. When one activates a
version it publishes it on a channel, and every other replica fetches at once
instead of waiting for its next poll. When one rejects a version it adds it to
a set of rejected versions (kept for ``REJECTED_TTL`` seconds) before
announcing it, and the gate of every replica asks that set before it
activates anything: a version that failed the gate anywhere is activated
nowhere. If Redis cannot be asked, that is no veto: each replica gates the
version on its own merits (an outage must not block good versions), and asks
again once Redis answers. A command that fails because its pooled connection
died (Redis restarted since it was last used) is sent once more, on a fresh
connection: the first use of a dead connection must not silently lose a
rejection. A version whose *check* failed on one replica
(stage ``"prepare"``: its time or memory limit, a crashed checker) is not
announced: another replica may have the resources to check it.

Channel and set names carry a hash of the source's description, so fleets
that read different repositories can share one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from authz.cache.redis import RedisClient
from authz.sources.gate import Activation, Gate, Rejection

__all__ = ["REJECTED_TTL", "RedisAnnouncer"]

log = logging.getLogger(__name__)

REJECTED_TTL = 7 * 24 * 3600

T = TypeVar("T")


class RedisAnnouncer:
    """Publishes one gate's activations and rejections and listens for the others'."""

    def __init__(
        self, client: RedisClient, source_description: str, *, replica_id: str | None = None
    ) -> None:
        ns = hashlib.sha256(source_description.encode()).hexdigest()[:16]
        self.channel = f"meshward:policies:{ns}:events"
        self.rejected_key = f"meshward:policies:{ns}:rejected"
        self.replica_id = replica_id or uuid.uuid4().hex
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = 0

    def attach(self, gate: Gate[Any]) -> None:
        """Announce ``gate``'s outcomes and let it ask about other replicas' rejections."""
        gate.on_activate(self._announce_activation)
        gate.on_reject(self.announce_rejection)

    async def is_rejected(self, version: str) -> bool:
        """Whether some replica's gate rejected ``version`` (raises ``RedisError``)."""
        return bool(await self._command(lambda: self._client.sismember(self.rejected_key, version)))

    async def announce_rejection(self, rejection: Rejection) -> None:
        if rejection.stage == "prepare":
            return  # this replica's checker failed, not necessarily the version
        try:
            await self._command(lambda: self._client.sadd(self.rejected_key, rejection.version))
            await self._command(lambda: self._client.expire(self.rejected_key, REJECTED_TTL))
            await self._publish("rejected", rejection.version)
        except (RedisError, OSError) as exc:
            log.warning("cannot announce a policy rejection", extra={"fields": {"error": str(exc)}})

    def _announce_activation(self, activation: Activation[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._publish_quietly("activated", activation.version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_quietly(self, event: str, version: str) -> None:
        try:
            await self._publish(event, version)
        except (RedisError, OSError) as exc:
            log.warning(
                "cannot announce a policy activation", extra={"fields": {"error": str(exc)}}
            )

    async def _publish(self, event: str, version: str) -> None:
        message = json.dumps({"event": event, "version": version, "replica": self.replica_id})
        await self._command(lambda: self._client.publish(self.channel, message))

    @staticmethod
    async def _command(send: Callable[[], Awaitable[T]]) -> T:
        """``send()``, once more if its pooled connection was dead (at most two tries).

        The client does not retry (:func:`~authz.cache.redis.open_redis`); it drops
        a connection that failed, so the second try opens a fresh one.
        """
        try:
            return await send()
        except RedisConnectionError:
            return await send()

    async def listen(self, gate: Gate[Any], *, retry_seconds: float = 1.0) -> None:
        """Trigger ``gate`` on every other replica's activation; reconnects until cancelled."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Something may have been activated while we were not listening.
                gate.trigger()
                async for message in pubsub.listen():
                    self._handle(gate, message)
            except (RedisError, OSError) as exc:
                log.warning(
                    "policy announcements unavailable; polling only",
                    extra={"fields": {"error": str(exc)}},
                )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(retry_seconds)

    def _handle(self, gate: Gate[Any], message: Any) -> None:
        if not isinstance(message, dict) or message.get("type") != "message":
            return
        try:
            body = json.loads(message["data"])
        except (ValueError, TypeError):
            return
        if not isinstance(body, dict) or body.get("replica") == self.replica_id:
            return
        self.received += 1
        if body.get("event") == "activated" and body.get("version") != gate.status().active_version:
            gate.trigger()
