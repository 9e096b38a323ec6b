"""What the console talks to: Temporal, the case store, the platform and the identity provider.

All of it is made at start-up and held for the app's lifetime. The case store is required: the
console keeps its sessions and its audit trail there.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuth
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from temporalio.client import Client

from enrollment.oidc import IdentityProvider

# The objects themselves, or zero-argument functions that make them (see `lifespan`).
ClientSource = Client | Callable[[], Awaitable[Client]]
PoolSource = AsyncConnectionPool | Callable[[], Awaitable[AsyncConnectionPool] | AsyncConnectionPool]
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[dict[str, Any]]]

CONSOLE_CLIENT = "enroll-console"


@dataclass(frozen=True)
class IdentityClient:
    """The console as a confidential client of the identity provider at `issuer`."""

    issuer: str
    client_secret: str = field(repr=False)
    client_id: str = CONSOLE_CLIENT


@dataclass(frozen=True)
class Backends:
    client: Client
    pool: AsyncConnectionPool
    http: httpx.AsyncClient
    platform_url: str
    # Verifies, introspects, refreshes and revokes tokens, and signs message proofs.
    provider: IdentityProvider
    # Authlib's OpenID Connect client (`StarletteOAuth2App`, untyped): the sign-in's code flow.
    signin: Any
    identity: IdentityClient


def backends(conn: HTTPConnection) -> Backends:
    """The backends of the running app (Starlette hands the lifespan's state to every request)."""
    held: Backends = conn.state.backends
    return held


def _signin_client(identity: IdentityClient, http_timeout_seconds: float) -> Any:
    """Authlib's client: PKCE S256, the nonce and the ID token's checks are its part of the code flow."""
    return OAuth().register(
        "identity",
        client_id=identity.client_id,
        client_secret=identity.client_secret,
        server_metadata_url=f"{identity.issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid", "code_challenge_method": "S256", "timeout": http_timeout_seconds},
    )


def lifespan(
    client: ClientSource, pool: PoolSource, platform_url: str, identity: IdentityClient, http_timeout_seconds: float
) -> Lifespan:
    """Make the backends at start-up and close what the console made at shutdown.

    Functions are called on the server's own event loop, because a Temporal client
    and a psycopg pool belong to the loop they were made on.
    """

    @contextlib.asynccontextmanager
    async def running(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as owned:
            temporal = client if isinstance(client, Client) else await client()
            store: AsyncConnectionPool
            if callable(pool):
                made = pool()
                store = await made if inspect.isawaitable(made) else made
                owned.push_async_callback(store.close)
            else:
                store = pool
            http = await owned.enter_async_context(httpx.AsyncClient(timeout=http_timeout_seconds))
            held = Backends(
                temporal,
                store,
                http,
                platform_url.rstrip("/"),
                IdentityProvider(identity.issuer, http),
                _signin_client(identity, http_timeout_seconds),
                identity,
            )
            yield {"backends": held}

    return running
