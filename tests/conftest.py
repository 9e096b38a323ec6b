"""The real pieces every case test runs against: the stand-in departments over HTTP and a Temporal
time-skipping test server (its days-long deadlines pass in milliseconds)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from psycopg_pool import AsyncConnectionPool

from activities.archive import ArchiveActivities
from enrollment.application import Application
from enrollment.case import CaseView
from enrollment.search_attributes import ensure_registered
from enrollment.settings import Settings
from standins.population import Population, generate
from store.database import open_pool
from standins.runner import RunningStandins, start_in_thread
from starter.intake import start_case
from workers.build import build_workers, new_http_client
from tests.processes import TEST_CONVERTER, TEST_TOKEN_SECRET, ServedApp, product_environment, start_dev_server, start_worker
from workflows.enrollment_case import EnrollmentCase

TEST_SERVER = shutil.which("temporal-test-server") or str(Path(sys.executable).parent / "temporal-test-server")


@pytest.fixture(scope="session")
def population() -> Population:
    return generate(seed=2027, families=80)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """DATABASE_URL when set (a real server), otherwise a throw-away embedded PostgreSQL."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
async def store_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url)
    yield pool
    await pool.close()


LOOKUP_KEY = b"test-lookup-key"


async def empty_store(pool: AsyncConnectionPool) -> None:
    """Tests reuse the generated application ids, so each starts from an empty case store."""
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE archive_documents, case_events, cases")


@pytest.fixture(scope="session")
def standins(population: Population) -> RunningStandins:
    running = start_in_thread(population)
    yield running
    running.stop()


def settings_for(standins: RunningStandins, **overrides) -> Settings:
    base = Settings.from_env()
    return base.model_copy(
        update={
            "public_security_url": f"{standins.base_url}/public-security",
            "social_insurance_url": f"{standins.base_url}/social-insurance",
            "natural_resources_url": f"{standins.base_url}/natural-resources",
            "platform_url": f"{standins.base_url}/platform",
            "routing_phase": overrides.pop("routing_phase", "phase_one"),
            "http_timeout_seconds": overrides.pop("http_timeout_seconds", 2.0),
            **overrides,
        }
    )


class Stack:
    """A test's view of the running system: Temporal client, workers, and the stand-ins' admin API."""

    def __init__(self, env: WorkflowEnvironment, standins: RunningStandins, population: Population, pool: AsyncConnectionPool):
        self.env = env
        self.pool = pool
        self.client: Client = env.client
        self.standins = standins
        self.population = population
        self.admin = httpx.Client(base_url=standins.base_url, timeout=10)

    def application(self, scenario: str, index: int = 0, **changes) -> Application:
        data = self.population.by_scenario(scenario)[index]
        return Application.model_validate({**data, **changes})

    def expectation(self, application: Application) -> dict:
        return self.population.expectations[application.application_id]

    async def submit(self, application: Application) -> WorkflowHandle:
        result = await start_case(self.client, application)
        assert result.result == "started", result
        return self.client.get_workflow_handle_for(EnrollmentCase.run, result.workflow_id)

    async def result(self, handle: WorkflowHandle) -> CaseView:
        """The case's final view, skipping time over its waits as a reviewer's weeks would pass.

        The query first lets the case finish taking the message a test just sent: the test server
        could otherwise skip to a deadline during that workflow task and refuse the timer's
        cancellation (a test-server fault; the real server accepts it).
        """
        await self.status(handle)
        async with self.env.time_skipping_unlocked():
            return await handle.result()

    async def status(self, handle: WorkflowHandle) -> CaseView:
        return await handle.query(EnrollmentCase.status)

    async def wait_for(self, handle: WorkflowHandle, *statuses: str, timeout: float = 20.0) -> CaseView:
        """Poll the case in real time (no skipping) until it reaches one of the statuses."""
        deadline = time.monotonic() + timeout
        while True:
            view = await self.status(handle)
            if view.status in statuses:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"case stayed {view.status}, expected {statuses}; timeline {view.timeline}")
            await asyncio.sleep(0.05)

    async def wait_through_retries(self, handles: list[WorkflowHandle], *statuses: str, timeout: float = 60.0) -> list[CaseView]:
        """Wait until every case reaches one of the statuses, moving the clock 5 s at a time.

        Retry backoffs pass quickly while deadlines days away never come, so no case's own
        deadline fires while a test is still talking to it.
        """
        deadline = time.monotonic() + timeout
        while True:
            views = [await self.status(handle) for handle in handles]
            if all(view.status in statuses for view in views):
                return views
            if time.monotonic() > deadline:
                raise AssertionError(f"cases stayed {sorted({v.status for v in views} - set(statuses))}, expected {statuses}")
            await self.env.sleep(5)

    async def wait_for_step(self, handle: WorkflowHandle, step: str, timeout: float = 20.0) -> CaseView:
        deadline = time.monotonic() + timeout
        while True:
            view = await self.status(handle)
            if any(entry.step == step for entry in view.timeline):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"no {step} in timeline {[e.step for e in view.timeline]}")
            await asyncio.sleep(0.05)

    def platform_record(self, application_id: str) -> dict:
        response = self.admin.get(f"/platform/v1/cases/{application_id}")
        response.raise_for_status()
        return response.json()

    def set_faults(self, service: str, **switches) -> None:
        self.admin.put(f"/admin/faults/{service}", json=switches).raise_for_status()

    @contextlib.asynccontextmanager
    async def platform_down(self) -> AsyncIterator[None]:
        self.set_faults("platform", outage=True)
        try:
            yield
        finally:
            self.set_faults("platform", outage=False)

    def stats(self) -> dict:
        return self.admin.get("/admin/stats").json()["stats"]


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER, test_server_existing_path=TEST_SERVER
    )
    await ensure_registered(environment.client)
    async with environment:
        yield environment


@pytest.fixture
async def stack(env: WorkflowEnvironment, standins: RunningStandins, population: Population, store_pool) -> Stack:
    await empty_store(store_pool)
    test_stack = Stack(env, standins, population, store_pool)
    test_stack.admin.delete("/admin/faults").raise_for_status()
    test_stack.admin.post("/admin/reset").raise_for_status()
    yield test_stack
    test_stack.admin.close()


@pytest.fixture
async def workers(stack: Stack) -> AsyncIterator[list[Worker]]:
    """Both workers, phase one, as `python -m workers` would run them against the stand-ins."""
    async with running_workers(stack, settings_for(stack.standins)) as running:
        yield running


class running_workers:
    """Run the product's workers with the given settings for the duration of a `with` block."""

    def __init__(self, stack: Stack, settings: Settings, pool: AsyncConnectionPool | None = None, **worker_options):
        self._stack, self._settings, self._options = stack, settings, worker_options
        self._pool = pool or stack.pool

    async def __aenter__(self) -> list[Worker]:
        self._http = new_http_client(self._settings)
        archive = ArchiveActivities(self._pool, LOOKUP_KEY)
        self._workers = build_workers(self._stack.client, self._settings, self._http, archive, **self._options)
        self._tasks = [asyncio.create_task(worker.run()) for worker in self._workers]
        return self._workers

    async def __aexit__(self, *exc_info) -> None:
        await asyncio.gather(*(worker.shutdown() for worker in self._workers))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()


# The product as separate processes on a Temporal dev server, one of each per test module that asks.


@pytest.fixture(scope="module")
async def dev_server(tmp_path_factory):
    server = await start_dev_server(tmp_path_factory.mktemp("temporal"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def environment(dev_server, standins, database_url, store_pool) -> dict[str, str]:
    """The environment of the product's processes, from an empty case store and stand-ins without faults."""
    await empty_store(store_pool)
    httpx.post(f"{standins.base_url}/admin/reset").raise_for_status()
    httpx.delete(f"{standins.base_url}/admin/faults").raise_for_status()
    return product_environment(dev_server.address, standins.base_url, database_url)


@pytest.fixture(scope="module")
def worker(environment, tmp_path_factory):
    process = start_worker(environment, tmp_path_factory.mktemp("worker") / "worker.log")
    yield process
    process.terminate()
    process.wait(60)


@pytest.fixture(scope="module")
def console(dev_server, standins, database_url):
    """The review console on a free port, against the module's dev server and the stand-in platform."""
    from console.app import create_app

    async def temporal_client():
        return await Client.connect(dev_server.address, data_converter=TEST_CONVERTER)

    async def case_store():
        return await open_pool(database_url, max_size=2)

    with ServedApp(create_app(temporal_client, case_store, TEST_TOKEN_SECRET, f"{standins.base_url}/platform")) as served:
        yield served
