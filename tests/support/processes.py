"""Running the product as separate processes, the way operators do: dev server, workers, `enroll`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from stack import temporal_server
from starter.cases import case_status as query_status
from tests.support.keys import TEST_PAYLOAD_ACTIVE, TEST_PAYLOAD_KEYS
from tests.support.waiting import wait_until

BIN = Path(sys.executable).parent

needs_temporal_cli = pytest.mark.skipif(
    temporal_server.find_cli() is None, reason="Temporal CLI not built: run scripts/install"
)


async def start_dev_server(folder: Path, port: int | None = None) -> temporal_server.DevServer:
    server = temporal_server.start(
        folder / "temporal.db",
        port=port or temporal_server.free_port(),
        ui_port=temporal_server.free_port(),
        log_file=folder / "server.log",
    )
    await temporal_server.wait_until_serving(server.address)
    return server


def product_environment(temporal_address: str, standins_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_address,
        "ENROLL_STANDINS_URL": standins_url,
        "ENROLL_ROUTING_PHASE": "phase_one",
        "ENROLL_HTTP_TIMEOUT_SECONDS": "2",
        "DATABASE_URL": database_url,
        "ENROLL_LOOKUP_KEY": "end-to-end-test-key",
        "ENROLL_PAYLOAD_KEYS": TEST_PAYLOAD_KEYS,
        "ENROLL_PAYLOAD_KEY_ID": TEST_PAYLOAD_ACTIVE,
        # Several worker processes may overlap between tests; the metrics endpoint has its own test.
        "ENROLL_METRICS_ADDRESS": "",
        **extra,
    }


def start_worker(environment: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:
        command = [str(BIN / "python"), "-m", "workers"]
        return subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)


def enroll(environment: dict[str, str], *args: str, readable: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `enroll`; its output is JSON (--json) unless the test reads what a person would see."""
    command = [str(BIN / "enroll"), *args, *([] if readable else ["--json"])]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


async def enroll_async(
    environment: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`enroll` (JSON output) without blocking the event loop: for tests whose workers run in this process."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "enroll"), *args, "--json", env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())


async def wait_for_status(client: Client, application_id: str, *statuses: str, timeout: float = 30.0) -> None:
    """Query the case through `client` until it is at one of the statuses."""

    async def status() -> str:
        try:
            return (await query_status(client, application_id)).status
        except Exception:  # no answer yet (a case not started, a worker not polling): ask again
            return "no answer"

    await wait_until(
        status,
        until=lambda status: status in statuses,
        timeout=timeout,
        interval=0.2,
        message=f"{application_id} at {' or '.join(statuses)}",
    )
