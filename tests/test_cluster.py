"""The production topology (stack/cluster.py): four Temporal server processes on PostgreSQL, mTLS on the frontend.

Real processes throughout: the product's worker and `enroll submit` connect with their own client
certificates through the SDK's environment configuration, the case store lives in the cluster's
PostgreSQL, and each fault test breaks one part of the cluster while a batch of cases is in flight,
then checks that every case ends where its scenario leads with exactly one result at the platform.

Select them with `-m cluster` (or leave them out with `-m "not cluster"`); they skip when the server
is not built (scripts/install-temporal-server).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import TLSConfig

from stack.certificates import ensure_certificates
from stack.cluster import SERVICES, STORE_DATABASE, STORE_OWNER, Cluster, cluster_available, start_cluster
from stack.temporal_server import find_cli, free_port
from standins.population import Population
from standins.runner import RunningStandins
from store import roles
from store.database import migrate, open_pool
from tests.support.batches import (
    assert_finished_once,
    batch_file,
    decide_every_case,
    resting,
    slow_departments,
    statuses,
)
from tests.support.keys import TEST_CONVERTER
from tests.support.people import People
from tests.support.processes import enroll, product_environment, start_worker
from tests.support.stack import start_afresh

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not cluster_available(), reason="cluster not built: run scripts/install-temporal-server"),
]


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    running = await start_cluster(tmp_path_factory.mktemp("cluster"), port=free_port(), ui_port=free_port())
    yield running
    running.stop()


@dataclass
class Product:
    """The case store in the cluster's PostgreSQL, and each process's environment: its role, its certificate."""

    pool: AsyncConnectionPool
    client: Client
    worker_env: dict[str, str]
    submit_env: dict[str, str]


@pytest.fixture(scope="module")
async def product(cluster: Cluster, standins: RunningStandins) -> AsyncIterator[Product]:
    owner_url = cluster.database.url(STORE_OWNER, STORE_DATABASE)
    await migrate(owner_url)
    passwords = {service: cluster.database.password(roles.login_role(service)) for service in roles.SERVICES}
    urls = await roles.service_urls(owner_url, passwords)
    pool = await open_pool(owner_url, max_size=4)

    def environment(service: roles.Service, profile: str) -> dict[str, str]:
        return product_environment(cluster.address, standins.base_url, urls[service], **cluster.profile_env(profile))

    client = await cluster.connect("tests", data_converter=TEST_CONVERTER)
    yield Product(pool, client, environment("worker", "workers"), environment("api", "api"))
    await pool.close()


def service_of(process: psutil.Process) -> str:
    arguments = process.cmdline()
    return arguments[arguments.index("--service") + 1]


async def test_four_server_processes_serve_only_clients_with_a_certificate(cluster: Cluster, tmp_path: Path) -> None:
    processes = {name: psutil.Process(process.pid) for name, process in cluster.processes.items()}
    assert sorted(processes) == sorted(SERVICES)
    assert len({process.pid for process in processes.values()}) == 4
    for name, process in processes.items():
        assert process.is_running() and service_of(process) == name
        assert process.cmdline()[0].endswith("temporal-server")

    with pytest.raises(RuntimeError):  # no TLS at all
        await asyncio.wait_for(Client.connect(cluster.address), 20)
    with pytest.raises(RuntimeError):  # the server checked, but no client certificate offered
        tls = TLSConfig(server_root_ca_cert=cluster.certificates.ca.read_bytes(), domain="localhost")
        await asyncio.wait_for(Client.connect(cluster.address, tls=tls), 20)

    with pytest.raises(RuntimeError):  # a client certificate, but from another authority
        stranger = ensure_certificates(tmp_path / "elsewhere").client("tests")
        tls = TLSConfig(
            server_root_ca_cert=cluster.certificates.ca.read_bytes(),
            domain="localhost",
            client_cert=stranger.cert.read_bytes(),
            client_private_key=stranger.key.read_bytes(),
        )
        await asyncio.wait_for(Client.connect(cluster.address, tls=tls), 20)

    client = await cluster.connect("tests")
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version.startswith("1.29")

    # The read-only UI reaches the frontend with its own certificate.
    answer = httpx.get(f"{cluster.ui_url}/api/v1/namespaces", timeout=10)
    assert answer.status_code == 200
    assert "default" in [n["namespaceInfo"]["name"] for n in answer.json()["namespaces"]]


@pytest.mark.skipif(find_cli() is None, reason="Temporal CLI not built")
def test_the_temporal_cli_connects_with_the_exported_profile(cluster: Cluster) -> None:
    cli = find_cli()
    assert cli is not None
    env = {**os.environ, **cluster.profile_env("operator")}
    described = subprocess.run(
        [str(cli), "operator", "namespace", "describe", "--namespace", "default", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["config"]["workflowExecutionRetentionTtl"] == "2592000s"
    attributes = subprocess.run(
        [str(cli), "operator", "search-attribute", "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert attributes.returncode == 0, attributes.stderr
    assert "CaseStatus" in attributes.stdout


async def run_batch(
    cluster: Cluster,
    product: Product,
    standins: RunningStandins,
    population: Population,
    people: People,
    log_dir: Path,
    batch_slice: slice,
    fault: Callable[[subprocess.Popen[bytes]], Awaitable[subprocess.Popen[bytes]]] | None = None,
) -> None:
    """Hand a batch in, break something (`fault`, given the worker, returns the worker now running), then
    see every case to its result: at rest where its scenario leads, reviewed, at the platform exactly once."""
    await start_afresh(product.pool, standins)
    slow_departments(standins)
    batch = population.applications[batch_slice]
    ids = [a["application_id"] for a in batch]
    path = batch_file(log_dir / "batch.jsonl", batch)
    worker = start_worker(product.worker_env, log_dir / "worker.log")
    try:
        submitted = enroll(product.submit_env, "submit", str(path))
        assert Counter(json.loads(line)["result"] for line in submitted.stdout.splitlines()) == {
            "started": len(batch)
        }, submitted.stderr
        client = product.client
        expected = resting(population, ids)
        if fault is not None:
            before = await statuses(client, ids)
            in_flight = sum(before[app_id] != expected[app_id] for app_id in ids)
            print(f"\n{in_flight}/{len(ids)} cases in flight when the fault came: {Counter(before.values())}")
            assert in_flight > 0, "the fault came after every case had come to rest"
            worker = await fault(worker)
        views = await decide_every_case(client, expected, population, people, timeout=180)
    finally:
        worker.terminate()
        worker.wait(60)

    async with product.pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM cases")).fetchone()
    assert row is not None and row[0] == len(batch), "one case in the store for each application"
    await assert_finished_once(views, standins, product.pool)


async def test_cases_go_from_hand_in_to_the_platform_result_on_the_cluster(
    cluster, product, standins, population, people, tmp_path
):
    await run_batch(cluster, product, standins, population, people, tmp_path, slice(0, 12))


@pytest.mark.parametrize(("service", "batch"), [("history", slice(12, 28)), ("matching", slice(28, 44))])
async def test_a_server_service_killed_and_restarted_mid_batch_loses_and_doubles_nothing(
    cluster, product, standins, population, people, tmp_path, service, batch
):
    async def kill_and_restart(worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        killed = cluster.processes[service]
        cluster.kill(service, signal.SIGKILL)
        await asyncio.sleep(2)
        await cluster.restart(service)
        assert killed.returncode == -signal.SIGKILL and cluster.processes[service].pid != killed.pid
        return worker

    await run_batch(cluster, product, standins, population, people, tmp_path, batch, kill_and_restart)


async def test_postgres_restarted_mid_batch_loses_and_doubles_nothing(
    cluster, product, standins, population, people, tmp_path
):
    async def restart_postgres(worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        postmaster = cluster.database.process
        await cluster.restart("postgres")
        assert postmaster is not None and postmaster.returncode is not None
        assert cluster.database.process is not None and cluster.database.process.pid != postmaster.pid
        return worker

    await run_batch(cluster, product, standins, population, people, tmp_path, slice(44, 60), restart_postgres)


async def test_worker_killed_mid_batch_loses_and_doubles_nothing(
    cluster, product, standins, population, people, tmp_path
):
    async def kill_worker(worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        return start_worker(product.worker_env, tmp_path / "worker-again.log")

    await run_batch(cluster, product, standins, population, people, tmp_path, slice(60, 76), kill_worker)
