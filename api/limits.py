"""Bounds on what one caller can ask of the API: the size of a request body, and requests per second per client.

The rate is a token bucket per client in this process (a burst of `burst`
requests, refilled at `per_second`); written here because it is a dozen lines
and the ASGI rate-limit libraries key on addresses, not on verified clients.
Several API processes each hold their own buckets, so the gateway-wide rate is
their sum; the deployment sets the rate per process accordingly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response


@dataclass
class _Bucket:
    tokens: float
    refilled: float = field(default_factory=time.monotonic)


class RateLimiter:
    def __init__(self, per_second: float, burst: int, max_kept: int = 10_000):
        self._rate = per_second
        self._burst = burst
        self._buckets: dict[str, _Bucket] = {}
        # Keyed by something callers choose (the console keys on addresses), the buckets are pruned
        # once there are this many: a full bucket is forgotten, as it is the same as a new one.
        self._max_kept = max_kept

    def wait_seconds(self, client_id: str) -> float:
        """0 when the client may make a request now (and takes one), else how long until it may."""
        now = time.monotonic()
        if client_id not in self._buckets and len(self._buckets) >= self._max_kept:
            self._forget_full(now)
        bucket = self._buckets.setdefault(client_id, _Bucket(tokens=self._burst, refilled=now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.refilled) * self._rate)
        bucket.refilled = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self._rate

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.refilled) * self._rate >= self._burst:
                del self._buckets[key]


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413, whether it declares its length or streams."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await problem_response(413, [f"body: at most {self._max} bytes"])(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    raise _TooLarge
            return message

        try:
            await self._app(scope, counted, send)
        except _TooLarge:
            await problem_response(413, [f"body: at most {self._max} bytes"])(scope, receive, send)


class _TooLarge(Exception):
    pass
