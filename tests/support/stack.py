"""The system under test in one process: a time-skipping Temporal server, the product's workers and the stand-ins.

Its days-long deadlines pass in milliseconds, so a case's every branch runs in a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowHandle
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.archive import ArchiveActivities
from enrollment.application import Application
from enrollment.case import CaseView
from enrollment.search_attributes import ensure_registered
from enrollment.settings import Settings
from standins.population import Population
from standins.runner import RunningStandins
from starter.intake import Intake, submit_one
from tests.support.keys import LOOKUP_KEY, TEST_CONVERTER
from tests.support.people import People
from tests.support.waiting import wait_until
from workers.build import build_workers, new_http_client
from workflows.enrollment_case import EnrollmentCase

TEST_SERVER = shutil.which("temporal-test-server") or str(Path(sys.executable).parent / "temporal-test-server")


@runtime_checkable
class TimeSkipping(Protocol):
    """What `start_time_skipping` returns beyond a WorkflowEnvironment: the test server's environment (a private
    temporalio class) can let its clock skip while a test waits on a handle it did not start through it."""

    def time_skipping_unlocked(self) -> contextlib.AbstractAsyncContextManager[None]: ...


async def start_time_skipping(runtime: Runtime | None = None) -> WorkflowEnvironment:
    """A time-skipping test server that knows the case search attributes and reads the tests' encrypted payloads."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER, runtime=runtime, test_server_existing_path=TEST_SERVER
    )
    await ensure_registered(environment.client)
    return environment


async def start_afresh(pool: AsyncConnectionPool, standins: RunningStandins) -> None:
    """Tests reuse the generated application ids, so each starts from an empty case store and stand-ins
    without faults or counts."""
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE archive_documents, case_events, cases, hand_ins, open_applications, api_nonces")
    httpx.post(f"{standins.base_url}/admin/reset").raise_for_status()
    httpx.delete(f"{standins.base_url}/admin/faults").raise_for_status()


def settings_for(standins: RunningStandins, **overrides: Any) -> Settings:
    base = Settings.from_env()
    return base.model_copy(
        update={
            "public_security_url": f"{standins.base_url}/public-security",
            "social_insurance_url": f"{standins.base_url}/social-insurance",
            "natural_resources_url": f"{standins.base_url}/natural-resources",
            "platform_url": f"{standins.base_url}/platform",
            "routing_phase": overrides.pop("routing_phase", "phase_one"),
            "http_timeout_seconds": overrides.pop("http_timeout_seconds", 2.0),
            # In-process workers run the workflow sandboxed: it traps a non-deterministic call in any test.
            "workflow_sandbox": overrides.pop("workflow_sandbox", True),
            **overrides,
        }
    )


def described(view: CaseView) -> str:
    return f"{view.application_id} {view.status} after {[entry.step for entry in view.timeline]}"


class Stack:
    """A test's view of the running system: Temporal client, workers, and the stand-ins' admin API."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        standins: RunningStandins,
        population: Population,
        pool: AsyncConnectionPool,
        people: People,
    ):
        self.env = env
        self.people = people
        self.pool = pool
        self.client: Client = env.client
        self.standins = standins
        self.population = population
        self.admin = httpx.Client(base_url=standins.base_url, timeout=10)

    def application(self, scenario: str, index: int = 0, **changes: Any) -> Application:
        data = self.population.by_scenario(scenario)[index]
        return Application.model_validate({**data, **changes})

    def expectation(self, application: Application) -> dict[str, Any]:
        return self.population.expectations[application.application_id]

    async def submit(self, application: Application) -> WorkflowHandle[Any, Any]:
        result = await submit_one(Intake(self.client, self.pool, LOOKUP_KEY, "tests"), application)
        assert result.result == "started" and result.workflow_id, result
        return self.client.get_workflow_handle_for(EnrollmentCase.run, result.workflow_id)

    async def result(self, handle: WorkflowHandle[Any, Any]) -> CaseView:
        """The case's final view, skipping time over its waits as a reviewer's weeks would pass.

        The query first lets the case finish taking the message a test just sent: the test server
        could otherwise skip to a deadline during that workflow task and refuse the timer's
        cancellation (a test-server fault; the real server accepts it).
        """
        await self.status(handle)
        assert isinstance(self.env, TimeSkipping), "the stack runs on the time-skipping test server"
        async with self.env.time_skipping_unlocked():
            view: CaseView = await handle.result()
            return view

    async def status(self, handle: WorkflowHandle[Any, Any]) -> CaseView:
        return await handle.query(EnrollmentCase.status)

    async def wait_for(self, handle: WorkflowHandle[Any, Any], *statuses: str, timeout: float = 20.0) -> CaseView:
        """Poll the case in real time (no skipping) until it reaches one of the statuses."""
        return await wait_until(
            lambda: self.status(handle),
            until=lambda view: view.status in statuses,
            timeout=timeout,
            interval=0.05,
            message=f"{handle.id} at {' or '.join(statuses)}",
            describe=described,
        )

    async def wait_for_step(self, handle: WorkflowHandle[Any, Any], step: str, timeout: float = 20.0) -> CaseView:
        """Poll the case in real time (no skipping) until its timeline has the step."""
        return await wait_until(
            lambda: self.status(handle),
            until=lambda view: any(entry.step == step for entry in view.timeline),
            timeout=timeout,
            interval=0.05,
            message=f"{step} in the timeline of {handle.id}",
            describe=described,
        )

    async def wait_through_retries(
        self, handles: list[WorkflowHandle[Any, Any]], *statuses: str, timeout: float = 60.0
    ) -> list[CaseView]:
        """Wait until every case reaches one of the statuses, moving the clock 5 s at a time.

        Retry backoffs pass quickly while deadlines days away never come, so no case's own
        deadline fires while a test is still talking to it.
        """

        async def views() -> list[CaseView]:
            return [await self.status(handle) for handle in handles]

        return await wait_until(
            views,
            until=lambda seen: all(view.status in statuses for view in seen),
            timeout=timeout,
            between_checks=lambda: self.env.sleep(5),
            message=f"{len(handles)} cases at {' or '.join(statuses)}",
            describe=lambda seen: [described(view) for view in seen if view.status not in statuses],
        )

    async def wait_for_answers(self, service: str, code: str, count: int, timeout: float = 20.0) -> None:
        """Wait until the stand-in of `service` has answered with `code` at least `count` times."""
        await wait_until(
            lambda: self.stats()[service]["by_code"],
            until=lambda codes: codes.get(code, 0) >= count,
            timeout=timeout,
            interval=0.05,
            message=f"{count} answers {code} from {service}",
        )

    def platform_record(self, application_id: str) -> dict[str, Any]:
        response = self.admin.get(f"/platform/v1/cases/{application_id}")
        response.raise_for_status()
        record: dict[str, Any] = response.json()
        return record

    def set_faults(self, service: str, **switches: Any) -> None:
        self.admin.put(f"/admin/faults/{service}", json=switches).raise_for_status()

    @contextlib.asynccontextmanager
    async def platform_down(self) -> AsyncIterator[None]:
        self.set_faults("platform", outage=True)
        try:
            yield
        finally:
            self.set_faults("platform", outage=False)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.admin.get("/admin/stats").json()["stats"]
        return stats


class running_workers:
    """Run the product's workers with the given settings for the duration of an `async with` block."""

    def __init__(self, stack: Stack, settings: Settings, pool: AsyncConnectionPool | None = None, **options: Any):
        self._stack, self._settings, self._options = stack, settings, options
        self._pool = pool or stack.pool

    async def __aenter__(self) -> list[Worker]:
        self._http = new_http_client(self._settings)
        archive = ArchiveActivities(self._pool, LOOKUP_KEY)
        self._workers = build_workers(self._stack.client, self._settings, self._http, archive, **self._options)
        self._tasks = [asyncio.create_task(worker.run()) for worker in self._workers]
        return self._workers

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(worker.shutdown() for worker in self._workers))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
