"""The API's connection to Temporal, made when first needed and again after it failed.

The API starts and answers `/healthz` while Temporal is still coming up or is
down; a request that needs a case then gets 503 with Retry-After, and the next
one tries to connect again. The same holds while the identity provider is down:
the connection needs a token from it for Temporal's frontend first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from enrollment.oidc import IdentityUnavailable
from starter.hand_in import IntakeUnavailable

NO_TOKEN = "the case service cannot be reached: no token for it from the identity provider"


class TemporalConnection:
    def __init__(self, connect: Callable[[], Awaitable[Client]]):
        self._connect = connect
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self._connect()
                except RuntimeError:  # what Client.connect raises when the server cannot be reached
                    raise IntakeUnavailable("the case service cannot be reached") from None
                except IdentityUnavailable:
                    raise IntakeUnavailable(NO_TOKEN) from None
        return self._client
