"""Restarting the Temporal dev server and killing the worker in the middle of a batch loses no case."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

import httpx
from temporalio.client import Client

from starter.cases import case_handle
from starter.cases import case_status as query_status
from store import cases as store
from tests.support.keys import TEST_CONVERTER
from tests.support.people import review_by
from tests.support.processes import enroll, needs_temporal_cli, product_environment, start_dev_server, start_worker
from tests.support.stack import start_afresh
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli

# Where each generated scenario comes to rest before anyone acts on it.
RESTING = {
    "online_review": "awaiting_review",
    "offline_review": "awaiting_review",
    "await_school_choice": "awaiting_school_selection",
    "offline_registration": "awaiting_offline_registration",
    "not_eligible": "not_eligible",
}


async def statuses(client: Client, application_ids: list[str]) -> dict[str, str]:
    views = await asyncio.gather(*(query_status(client, app_id) for app_id in application_ids))
    return {view.application_id: view.status for view in views}


async def test_server_restart_and_worker_kill_mid_batch_lose_no_case(
    tmp_path, standins, population, database_url, store_pool, people
):
    await start_afresh(store_pool, standins)
    # Slow departments keep verifications in flight while the server and the worker go down.
    for service in ("hukou", "residence_permit", "social_insurance", "property"):
        httpx.put(
            f"{standins.base_url}/admin/faults/{service}", json={"latency": {"median_ms": 300, "p99_ms": 900}}
        ).raise_for_status()
    batch = population.applications[20:60]
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in batch), encoding="utf-8")
    ids = [a["application_id"] for a in batch]

    folder = tmp_path / "temporal"
    folder.mkdir()
    server = await start_dev_server(folder)
    port = int(server.address.rsplit(":", 1)[1])
    environment = product_environment(server.address, standins.base_url, database_url)
    worker = start_worker(environment, tmp_path / "worker.log")
    try:
        submitted = enroll(environment, "submit", str(path))
        assert Counter(json.loads(line)["result"] for line in submitted.stdout.splitlines()) == {"started": len(batch)}

        server.stop()
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        server = await start_dev_server(folder, port=port)
        worker = start_worker(environment, tmp_path / "worker.log")

        client = await Client.connect(server.address, data_converter=TEST_CONVERTER)
        expected = {app_id: RESTING[population.expectations[app_id]["expected_route"]] for app_id in ids}
        await wait_until(
            lambda: statuses(client, ids),
            until=lambda current: current == expected,
            timeout=120,
            interval=0.5,
            message="every case at rest where its scenario leads",
            describe=lambda current: {k: (v, expected[k]) for k, v in current.items() if v != expected[k]},
        )

        for app_id in [a for a, status in expected.items() if status == "awaiting_review"]:
            district = population.expectations[app_id]["district_code"]
            receipt = await people.send(
                case_handle(client, app_id),
                review_by(district, "approve", "同意"),
            )
            assert receipt.accepted, (app_id, receipt)
        finished = [a for a, status in expected.items() if status in ("awaiting_review", "not_eligible")]
        views = await wait_until(
            lambda: asyncio.gather(*(query_status(client, app_id) for app_id in finished)),
            until=lambda views: all(view.platform_synced for view in views),
            timeout=120,
            interval=0.5,
            message=f"the results of {len(finished)} finished cases at the platform",
            describe=lambda views: sorted(view.application_id for view in views if not view.platform_synced),
        )
    finally:
        worker.terminate()
        worker.wait(60)
        server.stop()

    for view in views:
        record = httpx.get(f"{standins.base_url}/platform/v1/cases/{view.application_id}").json()
        assert len(record["result"]) == 1, f"{view.application_id} has {len(record['result'])} results"
        stored = await store.case_record(store_pool, view.application_id)
        assert stored is not None, f"{view.application_id} is not in the store"
        assert [e["seq"] for e in stored["events"]] == list(range(len(view.timeline))), (
            [e["step"] for e in stored["events"]],
            [e.step for e in view.timeline],
        )
        assert len(stored["archive"]) == 3
