"""The one way tests wait: check, and check again, until something holds or the time is up.

Cases, workers and servers run beside the test, so what a test waits for comes true some time
later. Every wait goes through `wait_until`, so each has a real-time bound and, when it runs out,
says what it waited for and what it saw last.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


# Two signatures so that the type checker sees what an async check's result will be once awaited.
@overload
async def wait_until(
    check: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], object] = ...,
    timeout: float,
    message: str,
    interval: float = ...,
    between_checks: Callable[[], Awaitable[object]] | None = ...,
    describe: Callable[[T], object] = ...,
) -> T: ...
@overload
async def wait_until(
    check: Callable[[], T],
    *,
    until: Callable[[T], object] = ...,
    timeout: float,
    message: str,
    interval: float = ...,
    between_checks: Callable[[], Awaitable[object]] | None = ...,
    describe: Callable[[T], object] = ...,
) -> T: ...
async def wait_until(
    check: Callable[[], Any],
    *,
    until: Callable[[Any], object] = bool,
    timeout: float,
    message: str,
    interval: float = 0.1,
    between_checks: Callable[[], Awaitable[object]] | None = None,
    describe: Callable[[Any], object] = repr,
) -> Any:
    """Call `check` (sync or async) until `until` holds for what it returns, and return that.

    Between checks it sleeps `interval` seconds, or awaits `between_checks` instead (to move a
    time-skipping clock, say). After `timeout` seconds of real time it fails with `message`, what
    was awaited, and the last value seen as `describe` renders it.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = check()
        if inspect.isawaitable(seen):
            seen = await seen
        if until(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {message}; last seen: {describe(seen)}")
        await (between_checks() if between_checks else asyncio.sleep(interval))
