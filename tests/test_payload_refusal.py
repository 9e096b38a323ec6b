"""Messages crafted without the payload key are refused, and none of them jams the case.

Someone with access to the Temporal server but not to the payload keys (the `temporal` CLI, an SDK
client without the product's codec) sends a case waiting for review: a raw `review` signal, a raw
`review` update, an update sealed with another key, a review sealed for another case, and raw ones
under the label of the UI's metadata answer. On the Temporal dev server (the real server), with the
product's workers in this process: the signal is read past (the case records its refusal), the
updates are rejected by the codec before the case's own checks see them, no workflow task fails (a
codec that raised would fail every attempt of the task for good: a signal stays in the history), and
a genuine review, proven by its reviewer, is taken after. A forged start, by contrast, fails loudly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import WorkflowSerializationContext

from enrollment.case import CASE_TASK_QUEUE, WORKFLOW_TYPE, CaseView
from enrollment.codec import EncryptionCodec
from standins.population import Population
from tests.support.keys import TEST_CODEC
from tests.support.outsider import (
    Product,
    case_awaiting_review,
    count,
    history_events,
    settled,
    timeline,
    without_the_codec,
)
from tests.support.people import People, review_by
from tests.support.processes import needs_temporal_cli
from tests.support.stack import described
from tests.support.waiting import wait_until
from workflows.enrollment_case import EnrollmentCase

pytestmark = needs_temporal_cli

UI_METADATA = b"temporal.api.sdk.v1.WorkflowMetadata"


async def test_messages_without_the_payload_key_are_refused_and_do_not_jam_the_case(
    product: Product, population: Population, people: People
):
    handle = await case_awaiting_review(product, population, index=5)
    before: CaseView = await handle.query(EnrollmentCase.status)
    accepted_before = count(await history_events(handle), EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    district = before.district_code
    review = review_by(district, "approve", "同意入学")
    forger = without_the_codec(product.client).get_workflow_handle(handle.id)
    other_key = EncryptionCodec({"test-2": os.urandom(32)}, "test-2", profile="standard")
    wrong_key = without_the_codec(product.client, dataclasses.replace(pydantic_data_converter, payload_codec=other_key))
    another_case = WorkflowSerializationContext(namespace=product.client.namespace, workflow_id=f"{handle.id}-other")
    [moved] = await TEST_CODEC.with_context(another_case).encode(
        pydantic_data_converter.payload_converter.to_payloads([review])
    )

    # (a) A raw signal: it is written into the history (the server takes any signal), and the case
    # reads past it: its workflow task must complete (a codec that raised would fail it for ever). The
    # case records a signal's refusal in its timeline, without reading it; nothing else changes.
    await forger.signal("review", review.model_dump(mode="json"))
    events = await settled(handle)
    signaled = next(
        i for i, event in enumerate(events) if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )
    outcomes = [
        event.event_type
        for event in events[signaled:]
        if event.event_type in (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
    ]
    assert outcomes == [EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED], "the signal's workflow task completed"
    after_signal: CaseView = await handle.query(EnrollmentCase.status)
    assert after_signal.status == "awaiting_review" and after_signal.reviews == before.reviews
    assert timeline(after_signal)[: len(before.timeline)] == timeline(before)
    assert [step for step, _, _ in timeline(after_signal)[len(before.timeline) :]] in ([], ["signal_refused"])

    # (b) a raw update, (c) one sealed with another key, (d) a review sealed for another case, copied here.
    # (e) a raw review labelled as the UI's metadata answer, and (f) that answer itself sent as a review:
    # the codec leaves such answers readable for the UI, but never lets them in.
    [as_json] = pydantic_data_converter.payload_converter.to_payloads([review])
    labelled = Payload(metadata={**as_json.metadata, "messageType": UI_METADATA}, data=as_json.data)
    metadata_answer = Payload(
        metadata={"encoding": b"json/protobuf", "messageType": UI_METADATA}, data=b'{"currentDetails":"approve"}'
    )
    refused_updates: list[Callable[[], Awaitable[Any]]] = [
        lambda: forger.execute_update("review", review.model_dump(mode="json")),
        lambda: wrong_key.get_workflow_handle(handle.id).execute_update(EnrollmentCase.review, review),
        lambda: forger.execute_update("review", RawValue(moved)),
        lambda: forger.execute_update("review", RawValue(labelled)),
        lambda: forger.execute_update("review", RawValue(metadata_answer)),
    ]
    for send in refused_updates:
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await send()
        assert "Failed decoding arguments" in str(rejected.value.cause)

    events = await settled(handle)
    assert count(events, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) == 0, "no workflow task failed"
    accepted = count(events, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert accepted == accepted_before, "no forged update reached the history"
    description = await handle.describe()
    pending = description.raw_description.pending_workflow_task
    assert not description.raw_description.HasField("pending_workflow_task") or pending.attempt == 1
    after: CaseView = await handle.query(EnrollmentCase.status)
    assert after.status == "awaiting_review" and after.reviews == before.reviews
    assert timeline(after) == timeline(after_signal), "stopped by the codec, before the case's own checks"

    # The genuine review, proven by its reviewer and sealed by the product for this case, is taken.
    receipt = await people.send(product.client.get_workflow_handle(handle.id), review)
    assert receipt.accepted, receipt
    decided = await wait_until(
        lambda: handle.query(EnrollmentCase.status),
        until=lambda view: view.status == "approved",
        timeout=30,
        interval=0.1,
        message=f"{handle.id} approved",
        describe=described,
    )
    assert [entry.step for entry in decided.timeline][len(after.timeline)] == "reviewed:approve"
    assert count(await history_events(handle), EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) == 0


async def test_a_case_started_without_the_payload_key_fails_loudly(product: Product, population: Population):
    """Undecodable payloads outside messages are not dropped: a forged start's first workflow task fails."""
    application = population.by_scenario("hukou_verified")[6]
    forger = without_the_codec(product.client)
    handle = await forger.start_workflow(
        WORKFLOW_TYPE,
        {"application": application, "fingerprint": "forged"},
        id=f"forged-{application['application_id']}",
        task_queue=CASE_TASK_QUEUE,
    )
    try:
        failed = await wait_until(
            lambda: history_events(handle),
            until=lambda events: count(events, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) > 0,
            timeout=20,
            interval=0.1,
            message=f"a failed workflow task on {handle.id}",
            describe=lambda events: [EventType.Name(event.event_type) for event in events],
        )
        [failure] = [
            event.workflow_task_failed_event_attributes.failure
            for event in failed
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
        assert failure.message == "Failed decoding arguments"
        assert "binary/refused" in failure.cause.message
    finally:
        await handle.terminate("forged start, test over")
