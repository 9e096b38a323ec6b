"""A service's own token for Temporal's frontend, fetched from the identity provider and kept fresh.

A frontend with the JWT claim mapper and default authorizer (stack/cluster.py, docker-compose.yml) lets a
call through only with a bearer token the provider signed for the `temporal` audience, whose `permissions`
claim allows the call (`default:write` for the product's services). The SDK sends `Client.api_key` as that
bearer on every call, workers' polls included; replacing it on the client replaces it on the connection the
workers share, so a token is swapped well before it lapses without reconnecting.

The provider's own answers decide the timing: `IdentityProvider.client_credentials` keeps a token until a
minute (or half its life) before it expires, and this loop asks it every `CHECK_SECONDS`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from temporalio.client import Client

from enrollment.oidc import TEMPORAL_AUDIENCE, IdentityError, IdentityProvider

log = structlog.get_logger(__name__)

# Well inside the minute of margin a cached token keeps, so a replacement is always in place in time.
CHECK_SECONDS = 20.0
# The loops of every client this process keeps fresh (a task nobody references may be collected).
_refreshing: set[asyncio.Task[None]] = set()


@dataclass
class TemporalCredentials:
    """A confidential client at the provider whose own tokens Temporal accepts (`temporal.own` there)."""

    issuer: str
    client_id: str
    secret: str = field(repr=False)
    _provider: IdentityProvider | None = field(default=None, init=False, repr=False)

    async def token(self) -> str:
        if self._provider is None:
            self._provider = IdentityProvider(self.issuer)
        return await self._provider.client_credentials(self.client_id, self.secret, TEMPORAL_AUDIENCE)

    async def connect(self, **options: Any) -> Client:
        """Client.connect with this client's token as the bearer, kept fresh while the process runs."""
        client = await Client.connect(**{**options, "api_key": await self.token()})
        self.keep_fresh(client)
        return client

    def keep_fresh(self, client: Client) -> asyncio.Task[None]:
        """Give `client` a new token whenever the provider issues one, until the task is cancelled (or the
        process ends)."""
        task = asyncio.get_running_loop().create_task(self._refresh(client), name=f"temporal token {self.client_id}")
        _refreshing.add(task)
        task.add_done_callback(_refreshing.discard)
        return task

    async def _refresh(self, client: Client) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                token = await self.token()
            except IdentityError as error:
                # The token in use is still good for up to a minute; the next round tries again.
                log.warning("temporal token not renewed", client=self.client_id, reason=error.reason)
                continue
            except Exception as error:  # whatever went wrong, the loop must outlive it
                # An answer the provider should never give; only its kind is logged (no body, no token).
                log.error("temporal token not renewed", client=self.client_id, reason=type(error).__name__)
                continue
            if token != client.api_key:
                client.api_key = token
                log.info("temporal token renewed", client=self.client_id)
