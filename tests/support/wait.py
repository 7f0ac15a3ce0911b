"""One way for a test to wait for something: :func:`eventually`.

It polls ``predicate`` on the monotonic clock until it returns a truthy value
or ``timeout`` seconds have passed, then fails naming what was awaited
(plus ``detail()``, e.g. a process's output, when given). Use it
for plain waits only; a loop that asserts something on every round stays a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["WaitTimeout", "eventually", "eventually_async"]

T = TypeVar("T")


class WaitTimeout(TimeoutError, AssertionError):
    """What was awaited did not happen in time (both a timeout and a test failure)."""


def eventually(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    detail: Callable[[], str] | None = None,
) -> T:
    """``predicate()``'s first truthy value; :class:`WaitTimeout` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(_failure(timeout, message, detail))
        time.sleep(interval)


@overload
async def eventually_async(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def eventually_async(
    predicate: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...


async def eventually_async(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    detail: Callable[[], str] | None = None,
) -> Any:
    """:func:`eventually` in an event loop: ``asyncio.sleep``s, awaits ``predicate`` if needed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(_failure(timeout, message, detail))
        await asyncio.sleep(interval)


def _failure(timeout: float, message: str, detail: Callable[[], str] | None) -> str:
    text = f"timed out after {timeout}s waiting for {message}"
    return f"{text}\n{detail()}" if detail is not None else text
