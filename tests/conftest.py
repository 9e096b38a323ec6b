"""Fixtures: the real pieces every test runs against. Helpers live in tests/support."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from subprocess import Popen

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.archive import ArchiveActivities
from stack.temporal_server import DevServer
from standins.identity_provider.grants import Lifetimes
from standins.identity_provider.runner import RunningIdentityProvider
from standins.identity_provider.runner import start_in_thread as start_identity_provider
from standins.population import Population, generate
from standins.runner import RunningStandins, start_in_thread
from store.database import open_pool
from tests.support.keys import LOOKUP_KEY, TEST_CONVERTER
from tests.support.outsider import Product
from tests.support.people import People
from tests.support.processes import product_environment, start_dev_server, start_worker
from tests.support.served import ServedApp
from tests.support.stack import Stack, running_workers, settings_for, start_afresh, start_time_skipping
from workers.build import build_workers, new_http_client


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


@pytest.fixture(scope="session", autouse=True)
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIdentityProvider]:
    """The stand-in identity provider, whose issuer every product process and in-process worker trusts."""
    with (
        start_identity_provider(tmp_path_factory.mktemp("identity")) as provider,
        pytest.MonkeyPatch.context() as environment,
    ):
        environment.setenv("ENROLL_IDENTITY_ISSUER", provider.base_url)
        yield provider


@pytest.fixture
def slow_clock_provider(tmp_path: Path) -> Iterator[RunningIdentityProvider]:
    """A provider whose proofs outlive the days a test skips: it signs by the wall clock while the case
    checks by the test server's, which skipping moves hours or weeks ahead of it."""
    with start_identity_provider(tmp_path / "identity", lifetimes=Lifetimes(proof=30 * 86400)) as provider:
        yield provider


@pytest.fixture(scope="session")
def people(identity_provider: RunningIdentityProvider) -> People:
    return People(identity_provider.base_url)


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
    env: WorkflowEnvironment,
    standins: RunningStandins,
    population: Population,
    store_pool: AsyncConnectionPool,
    people: People,
) -> AsyncIterator[Stack]:
    await start_afresh(store_pool, standins)
    test_stack = Stack(env, standins, population, store_pool, people)
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
async def console(
    dev_server: DevServer, standins: RunningStandins, database_url: str, identity_provider: RunningIdentityProvider
) -> AsyncIterator[ServedApp]:
    """The review console on a free port, against the module's dev server, the stand-in platform and provider."""
    from tests.support.identity_console import served_console

    platform = f"{standins.base_url}/platform"
    async with served_console(dev_server.address, platform, database_url, identity_provider.base_url) as served:
        yield served


@pytest.fixture(scope="module")
async def product(
    dev_server: DevServer, standins: RunningStandins, store_pool: AsyncConnectionPool
) -> AsyncIterator[Product]:
    """The product's workers in this process on the module's dev server, and a client with the product's codec."""
    await start_afresh(store_pool, standins)
    client = await Client.connect(dev_server.address, data_converter=TEST_CONVERTER)
    settings = settings_for(standins)
    http = new_http_client(settings)
    workers = build_workers(client, settings, http, ArchiveActivities(store_pool, LOOKUP_KEY))
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    yield Product(client, store_pool)
    await asyncio.gather(*(worker.shutdown() for worker in workers))
    await asyncio.gather(*tasks, return_exceptions=True)
    await http.aclose()
