"""A case seen from outside: the product's workers on a dev server, and clients that lack its keys or proofs.

Used by the tests that attack a case (test_payload_refusal.py, test_attacks.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter

from enrollment.application import Application
from enrollment.case import CaseView
from standins.population import Population
from starter.intake import Intake, submit_one
from tests.support.keys import LOOKUP_KEY
from tests.support.stack import described
from tests.support.waiting import wait_until
from workflows.enrollment_case import EnrollmentCase


@dataclasses.dataclass
class Product:
    client: Client
    pool: AsyncConnectionPool


def without_the_codec(client: Client, data_converter: DataConverter = DataConverter.default) -> Client:
    """A client of the same server that does not hold the product's payload keys."""
    return Client(client.service_client, namespace=client.namespace, data_converter=data_converter)


async def history_events(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return [event async for event in handle.fetch_history_events()]


async def settled(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """The history once no workflow task is scheduled or running (the last one done, whatever its outcome)."""

    async def events() -> list[Any]:
        return await history_events(handle)

    return await wait_until(
        events,
        until=lambda seen: (
            seen[-1].event_type
            not in (EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
        ),
        timeout=20,
        interval=0.1,
        message=f"no workflow task in progress on {handle.id}",
        describe=lambda seen: EventType.Name(seen[-1].event_type),
    )


def count(events: list[Any], event_type: EventType.ValueType) -> int:
    return sum(1 for event in events if event.event_type == event_type)


def timeline(view: CaseView) -> list[tuple[str, str, str | None]]:
    return [(entry.step, entry.actor, entry.detail) for entry in view.timeline]


async def case_awaiting_review(product: Product, population: Population, index: int) -> WorkflowHandle[Any, Any]:
    application = Application.model_validate(population.by_scenario("hukou_verified")[index])
    submitted = await submit_one(Intake(product.client, product.pool, LOOKUP_KEY, "tests"), application)
    assert submitted.result == "started" and submitted.workflow_id, submitted
    handle: WorkflowHandle[Any, Any] = product.client.get_workflow_handle(submitted.workflow_id)
    await wait_until(
        lambda: handle.query(EnrollmentCase.status),
        until=lambda view: view.status == "awaiting_review",
        timeout=30,
        interval=0.1,
        message=f"{handle.id} awaiting review",
        describe=described,
    )
    return handle
