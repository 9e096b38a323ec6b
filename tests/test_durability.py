"""Restarting the Temporal dev server and killing the worker in the middle of a batch loses no case."""

from __future__ import annotations

import json
import signal
from collections import Counter

from temporalio.client import Client

from tests.support.batches import assert_finished_once, batch_file, decide_every_case, resting, slow_departments
from tests.support.keys import TEST_CONVERTER
from tests.support.processes import enroll, needs_temporal_cli, product_environment, start_dev_server, start_worker
from tests.support.stack import start_afresh

pytestmark = needs_temporal_cli


async def test_server_restart_and_worker_kill_mid_batch_lose_no_case(
    tmp_path, standins, population, database_url, store_pool, people
):
    await start_afresh(store_pool, standins)
    slow_departments(standins)
    batch = population.applications[20:60]
    path = batch_file(tmp_path / "batch.jsonl", batch)
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
        views = await decide_every_case(client, resting(population, ids), population, people, timeout=120)
    finally:
        worker.terminate()
        worker.wait(60)
        server.stop()

    await assert_finished_once(views, standins, store_pool)
