"""Fixtures: the real pieces every test runs against. Helpers live in tests/support."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from subprocess import Popen

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from stack.temporal_server import DevServer
from standins.population import Population, generate
from standins.runner import RunningStandins, start_in_thread
from store.database import open_pool
from tests.support.keys import TEST_CONVERTER, TEST_TOKEN_SECRET
from tests.support.processes import product_environment, start_dev_server, start_worker
from tests.support.served import ServedApp
from tests.support.stack import Stack, running_workers, settings_for, start_afresh, start_time_skipping


@pytest.fixture(scope="session")
def population() -> Population:
    return generate(seed=2027, families=80)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL when set (a real server), otherwise a throw-away embedded PostgreSQL."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
async def store_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def standins(population: Population) -> Iterator[RunningStandins]:
    running = start_in_thread(population)
    yield running
    running.stop()


# The product in this process, on a time-skipping test server, one of each per test that asks.


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await start_time_skipping() as environment:
        yield environment


@pytest.fixture
async def stack(
    env: WorkflowEnvironment, standins: RunningStandins, population: Population, store_pool: AsyncConnectionPool
) -> AsyncIterator[Stack]:
    await start_afresh(store_pool, standins)
    test_stack = Stack(env, standins, population, store_pool)
    yield test_stack
    test_stack.admin.close()


@pytest.fixture
async def workers(stack: Stack) -> AsyncIterator[list[Worker]]:
    """Both workers, phase one, as `python -m workers` would run them against the stand-ins."""
    async with running_workers(stack, settings_for(stack.standins)) as running:
        yield running


# The product as separate processes on a Temporal dev server, one of each per test module that asks.


@pytest.fixture(scope="module")
async def dev_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    server = await start_dev_server(tmp_path_factory.mktemp("temporal"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def dev_client(dev_server: DevServer) -> Client:
    """A client of the module's dev server that reads the product's encrypted payloads."""
    return await Client.connect(dev_server.address, data_converter=TEST_CONVERTER)


@pytest.fixture(scope="module")
async def environment(
    dev_server: DevServer, standins: RunningStandins, database_url: str, store_pool: AsyncConnectionPool
) -> dict[str, str]:
    """The environment of the product's processes, from an empty case store and stand-ins without faults."""
    await start_afresh(store_pool, standins)
    return product_environment(dev_server.address, standins.base_url, database_url)


@pytest.fixture(scope="module")
def worker(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Popen[bytes]]:
    process = start_worker(environment, tmp_path_factory.mktemp("worker") / "worker.log")
    yield process
    process.terminate()
    process.wait(60)


@pytest.fixture(scope="module")
async def console(dev_server: DevServer, standins: RunningStandins, database_url: str) -> AsyncIterator[ServedApp]:
    """The review console on a free port, against the module's dev server and the stand-in platform."""
    from console.app import create_app

    async def temporal_client() -> Client:
        return await Client.connect(dev_server.address, data_converter=TEST_CONVERTER)

    async def case_store() -> AsyncConnectionPool:
        return await open_pool(database_url, max_size=2)

    app = create_app(temporal_client, case_store, TEST_TOKEN_SECRET, f"{standins.base_url}/platform")
    async with ServedApp(app) as served:
        yield served
