"""Running the product as separate processes, the way operators do: dev server, workers, `enroll`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from enrollment import tokens
from enrollment.codec import EncryptionCodec, parse_keys
from stack import temporal_server

BIN = Path(sys.executable).parent
# Two keys, the second active: the processes read what either wrote (rotation).
TEST_PAYLOAD_KEYS = "test-1:" + "A" * 43 + "=,test-2:" + "B" * 43 + "="
TEST_PAYLOAD_ACTIVE = "test-2"
TEST_CONVERTER = dataclasses.replace(
    pydantic_data_converter, payload_codec=EncryptionCodec(parse_keys(TEST_PAYLOAD_KEYS), TEST_PAYLOAD_ACTIVE)
)

needs_temporal_cli = pytest.mark.skipif(temporal_server.find_cli() is None, reason="Temporal CLI not built: run scripts/install")


async def start_dev_server(folder: Path, port: int | None = None) -> temporal_server.DevServer:
    server = temporal_server.start(
        folder / "temporal.db", port=port or temporal_server.free_port(), ui_port=temporal_server.free_port(), log_file=folder / "server.log"
    )
    await temporal_server.wait_until_serving(server.address)
    return server


# Signs the identity tokens of the product's processes and of the review console in tests.
TEST_TOKEN_SECRET = b"end-to-end-token-secret"


def signed_token(subject: str, role: str, district: str | None, hours: float = 1.0) -> str:
    """An identity token the test processes and the console accept (expired when hours < 0)."""
    return tokens.issue(TEST_TOKEN_SECRET, subject, role, district, dt.timedelta(hours=hours))


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
        "ENROLL_TOKEN_SECRET": TEST_TOKEN_SECRET.decode(),
        # Several worker processes may overlap between tests; the metrics endpoint has its own test.
        "ENROLL_METRICS_ADDRESS": "",
        **extra,
    }


def start_worker(environment: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen([str(BIN / "python"), "-m", "workers"], env=environment, stdout=output, stderr=subprocess.STDOUT)


def enroll(environment: dict[str, str], *args: str, readable: bool = False) -> subprocess.CompletedProcess:
    """Run `enroll`; its output is JSON (--json) unless the test reads what a person would see."""
    return subprocess.run(
        [str(BIN / "enroll"), *args, *([] if readable else ["--json"])], env=environment, capture_output=True, text=True, timeout=60
    )


def eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.3)


def case_status(environment: dict[str, str], application_id: str) -> dict:
    done = enroll(environment, "status", application_id)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def issue_token(environment: dict[str, str], subject: str, role: str, district: str | None = None, hours: float = 1.0) -> str:
    args = ["token", "issue", "--subject", subject, "--role", role, "--hours", str(hours)]
    if district:
        args += ["--district", district]
    done = enroll(environment, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class ServedApp:
    """An ASGI app on a free localhost port, on its own thread, for real HTTP in tests."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = temporal_server.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "ServedApp":
        self._thread.start()
        eventually(lambda: self._server.started, timeout=10)
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = True
        self._thread.join(10)
