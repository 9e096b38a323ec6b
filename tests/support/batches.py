"""A batch of generated cases seen through a fault: handed in, brought to rest, decided, and checked.

The durability tests (dev server, tests/test_durability.py) and the cluster's fault tests
(tests/test_cluster.py) break different things, then expect the same: every case where its scenario
leads, every finished case at the platform exactly once, its steps and archive complete in the store.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from enrollment.case import CaseView
from standins.population import Population
from standins.runner import RunningStandins
from starter.cases import case_handle
from starter.cases import case_status as query_status
from store import cases as store
from tests.support.people import People, review_by
from tests.support.waiting import wait_until

# Where each generated scenario comes to rest before anyone acts on it.
RESTING = {
    "online_review": "awaiting_review",
    "offline_review": "awaiting_review",
    "await_school_choice": "awaiting_school_selection",
    "offline_registration": "awaiting_offline_registration",
    "not_eligible": "not_eligible",
}


def slow_departments(standins: RunningStandins, median_ms: float = 300, p99_ms: float = 900) -> None:
    """Slow departments keep verifications in flight while a fault happens.

    A test that needs cases still verifying when its fault comes, after a batch was handed in one by one, asks
    for more: at 300 ms the first cases of a batch could come to rest before the fault came, and in a fast run
    all of them could. Keep p99 under the tests' HTTP timeout (2 s, tests/support/processes.py): calls past it
    are retried, and an activity cut off by a fault waits out its own timeout, so slower costs minutes.
    """
    for service in ("hukou", "residence_permit", "social_insurance", "property"):
        httpx.put(
            f"{standins.base_url}/admin/faults/{service}", json={"latency": {"median_ms": median_ms, "p99_ms": p99_ms}}
        ).raise_for_status()


def batch_file(path: Path, batch: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in batch), encoding="utf-8")
    return path


def resting(population: Population, application_ids: list[str]) -> dict[str, str]:
    return {app_id: RESTING[population.expectations[app_id]["expected_route"]] for app_id in application_ids}


async def statuses(client: Client, application_ids: list[str]) -> dict[str, str]:
    async def status(application_id: str) -> str:
        try:
            return (await query_status(client, application_id)).status
        except Exception:  # the server, a history shard or the case's task queue is coming back: ask again
            return "no answer"

    found = await asyncio.gather(*(status(app_id) for app_id in application_ids))
    return dict(zip(application_ids, found, strict=True))


async def decide_every_case(
    client: Client, expected: dict[str, str], population: Population, people: People, timeout: float
) -> list[CaseView]:
    """Wait until each case rests where expected, approve those awaiting review, and return the views of the
    finished ones once the platform has their results."""
    await wait_until(
        lambda: statuses(client, list(expected)),
        until=lambda current: current == expected,
        timeout=timeout,
        interval=0.5,
        message="every case at rest where its scenario leads",
        describe=lambda current: {k: (v, expected[k]) for k, v in current.items() if v != expected[k]},
    )
    for app_id in [a for a, status in expected.items() if status == "awaiting_review"]:
        district = population.expectations[app_id]["district_code"]
        receipt = await people.send(case_handle(client, app_id), review_by(district, "approve", "同意"))
        assert receipt.accepted, (app_id, receipt)
    finished = [a for a, status in expected.items() if status in ("awaiting_review", "not_eligible")]
    views: list[CaseView] = await wait_until(
        lambda: asyncio.gather(*(query_status(client, app_id) for app_id in finished)),
        until=lambda views: all(view.platform_synced for view in views),
        timeout=timeout,
        interval=0.5,
        message=f"the results of {len(finished)} finished cases at the platform",
        describe=lambda views: sorted(view.application_id for view in views if not view.platform_synced),
    )
    return views


async def assert_finished_once(views: list[CaseView], standins: RunningStandins, pool: AsyncConnectionPool) -> None:
    """One result each at the platform; every step and the three archive documents in the case store."""
    for view in views:
        record = httpx.get(f"{standins.base_url}/platform/v1/cases/{view.application_id}").json()
        assert len(record["result"]) == 1, f"{view.application_id} has {len(record['result'])} results"
        stored = await store.case_record(pool, view.application_id)
        assert stored is not None, f"{view.application_id} is not in the store"
        assert [e["seq"] for e in stored["events"]] == list(range(len(view.timeline))), (
            [e["step"] for e in stored["events"]],
            [e.step for e in view.timeline],
        )
        assert len(stored["archive"]) == 3
