"""The Temporal development server (with its Web UI), built from the CLI's Go module.

The CLI is found at $TEMPORAL_CLI, in the project's git-ignored `.tools/bin`,
or on PATH; `scripts/install-temporal-cli` builds it there. The server keeps
its state in a SQLite file, so a restart keeps every case.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from enrollment.search_attributes import ALL

ROOT = Path(__file__).resolve().parent.parent
_TYPE_NAMES = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "TEXT": "Text",
    "BOOL": "Bool",
    "DOUBLE": "Double",
    "DATETIME": "Datetime",
}


def find_cli() -> Path | None:
    candidates = [os.environ.get("TEMPORAL_CLI"), str(ROOT / ".tools" / "bin" / "temporal"), shutil.which("temporal")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def search_attribute_flags() -> list[str]:
    """`--search-attribute Name=Type` for every case search attribute."""
    flags = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_TYPE_NAMES[key.indexed_value_type.name]}"]
    return flags


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DevServer:
    process: subprocess.Popen
    address: str
    ui_url: str
    db_file: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    db_file: Path,
    port: int = 7233,
    ui_port: int | None = None,
    log_file: Path | None = None,
    wait_seconds: float = 60.0,
    ui_codec_endpoint: str | None = None,
    extra_flags: tuple[str, ...] = (),
) -> DevServer:
    """Start the dev server with the case search attributes registered and wait until it answers.

    extra_flags go to `temporal server start-dev` as they are (`--sqlite-pragma`, `--dynamic-config-value`).
    """
    cli = find_cli()
    if cli is None:
        raise RuntimeError("Temporal CLI not found: run scripts/install-temporal-cli (or set TEMPORAL_CLI)")
    db_file.parent.mkdir(parents=True, exist_ok=True)
    ui_port = ui_port or port + 1000
    command = [
        str(cli),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--log-level",
        "warn",
        *search_attribute_flags(),
        # Write-ahead log, synced at checkpoints: survives the server process dying (what a restart
        # or a crash does) and lifts the dev server's throughput about threefold on this machine.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        # One partition per task queue, so a verifier's rate limit holds in every second
        # (the compose deployment sets this for the verifier queues in its dynamic config).
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
        *(["--ui-codec-endpoint", ui_codec_endpoint] if ui_codec_endpoint else []),
        *extra_flags,
    ]
    # The server writes to its own copy of the descriptor; this process need not keep one open.
    with open(log_file or os.devnull, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    server = DevServer(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", db_file)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Temporal dev server exited with {process.returncode}; see {log_file or 'its output'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Temporal dev server did not listen on {port} within {wait_seconds:.0f}s")


async def wait_until_serving(address: str, namespace: str = "default", wait_seconds: float = 60.0) -> None:
    """Wait until the server answers a history read, which it cannot before its shards are loaded.

    A listening port is not enough: after a restart the frontend accepts calls
    while history shards are still being acquired ("shard status unknown").
    """
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
    from temporalio.client import Client
    from temporalio.service import RPCError, RPCStatusCode

    deadline = time.monotonic() + wait_seconds
    last: RPCError | RuntimeError
    probe = DescribeWorkflowExecutionRequest(
        namespace=namespace, execution=WorkflowExecution(workflow_id="readiness-probe")
    )
    while True:
        try:
            client = await Client.connect(address, namespace=namespace)
            await client.workflow_service.describe_workflow_execution(probe, retry=False)
            return
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            last = err
        except RuntimeError as err:
            last = err
        if time.monotonic() > deadline:
            raise RuntimeError(f"Temporal at {address} is not serving after {wait_seconds:.0f}s: {last}")
        await asyncio.sleep(0.5)
