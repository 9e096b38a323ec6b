"""The HTTP API served in the test process, against a module's dev server and the case store."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from api.app import ApiLimits, create_app
from api.callers import ClientRegistry, RegisteredClient
from enrollment.settings import Settings
from store.database import open_pool
from tests.support.keys import TEST_CONVERTER
from tests.support.served import ServedApp


def served_api(
    temporal_address: str, database_url: str, clients: list[RegisteredClient], lookup_key: bytes, **limits: Any
) -> ServedApp:
    """The API on a free port (`async with`), with these registered clients and limits (ApiLimits fields)."""

    async def temporal() -> Client:
        return await Client.connect(temporal_address, data_converter=TEST_CONVERTER)

    async def case_store() -> AsyncConnectionPool:
        return await open_pool(database_url, max_size=4)

    registry = ClientRegistry(clients)
    return ServedApp(create_app(Settings.from_env(), registry, lookup_key, temporal, case_store, ApiLimits(**limits)))
