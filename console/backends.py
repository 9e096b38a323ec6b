"""What the console talks to: Temporal, the case store and the platform, held for the app's lifetime."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from temporalio.client import Client

# The objects themselves, or zero-argument functions that make them (see `lifespan`).
ClientSource = Client | Callable[[], Awaitable[Client]]
PoolSource = AsyncConnectionPool | Callable[[], Awaitable[AsyncConnectionPool] | AsyncConnectionPool] | None
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[dict[str, Any]]]


@dataclass(frozen=True)
class Backends:
    client: Client
    # None: no case store, and the case page leaves out its archive card.
    pool: AsyncConnectionPool | None
    http: httpx.AsyncClient
    platform_url: str


def backends(request: Request) -> Backends:
    """The backends of the running app (Starlette hands the lifespan's state to every request)."""
    held: Backends = request.state.backends
    return held


def lifespan(client: ClientSource, pool: PoolSource, platform_url: str, http_timeout_seconds: float) -> Lifespan:
    """Make the backends at start-up and close what the console made at shutdown.

    Functions are called on the server's own event loop, because a Temporal client
    and a psycopg pool belong to the loop they were made on.
    """

    @contextlib.asynccontextmanager
    async def running(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as owned:
            temporal = client if isinstance(client, Client) else await client()
            store: AsyncConnectionPool | None
            if callable(pool):
                made = pool()
                store = await made if inspect.isawaitable(made) else made
                owned.push_async_callback(store.close)
            else:
                store = pool
            http = await owned.enter_async_context(httpx.AsyncClient(timeout=http_timeout_seconds))
            yield {"backends": Backends(temporal, store, http, platform_url.rstrip("/"))}

    return running
