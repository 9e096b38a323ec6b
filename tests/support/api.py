"""The HTTP API served in the test process, against a module's dev server and the case store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from api.app import ApiLimits, create_app
from api.callers import ClientRegistry, RegisteredClient
from enrollment.identity import LookupSecret
from enrollment.oidc import IdentityProvider
from enrollment.provers import ClientProver
from enrollment.settings import Settings
from store.database import open_pool
from tests.support.identity import CLIENT_SECRETS
from tests.support.keys import TEST_CONVERTER
from tests.support.served import ServedApp

API_CLIENT = "enroll-api"


def served_api(
    temporal_address: str,
    database_url: str,
    clients: list[RegisteredClient],
    lookup_key: LookupSecret,
    issuer: str | None = None,
    temporal: Callable[[], Awaitable[Client]] | None = None,
    **limits: Any,
) -> ServedApp:
    """The API on a free port (`async with`), with these registered clients and limits (ApiLimits fields).

    It relays applicants' messages proven as its own client at the identity provider `issuer` (default:
    the one the tests run, ENROLL_IDENTITY_ISSUER), as `python -m api` does. `temporal`: how it connects to
    Temporal (default: plainly, to `temporal_address`).
    """

    async def plain_connection() -> Client:
        return await Client.connect(temporal_address, data_converter=TEST_CONVERTER)

    async def case_store() -> AsyncConnectionPool:
        return await open_pool(database_url, max_size=4)

    settings = Settings.from_env()
    identity = IdentityProvider(issuer or settings.identity_issuer)
    prove = ClientProver(identity, API_CLIENT, CLIENT_SECRETS[API_CLIENT])
    registry = ClientRegistry(clients)
    connect = temporal or plain_connection
    app = create_app(settings, registry, lookup_key, connect, case_store, prove, identity, ApiLimits(**limits))
    return ServedApp(app)
