"""The Temporal development server, built from the CLI's Go module, and its Web UI, read-only.

The CLI is found at $TEMPORAL_CLI, in the project's git-ignored `.tools/bin`,
or on PATH; `scripts/install-temporal-cli` builds it there. The server keeps
its state in a SQLite file, so a restart keeps every case.

The UI is not the one the CLI embeds (which cannot switch write actions off)
but the same UI server run on its own with every write action disabled: ops
read cases there, and cases change only through the product, where every
message is proven and audited.
"""

from __future__ import annotations

import asyncio
import json
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


def _find(configured: str | None, name: str) -> Path | None:
    candidates = [configured, str(ROOT / ".tools" / "bin" / name), shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def find_cli() -> Path | None:
    return _find(os.environ.get("TEMPORAL_CLI"), "temporal")


def find_ui_server() -> Path | None:
    return _find(os.environ.get("TEMPORAL_UI_SERVER"), "temporal-ui-server")


# Every action the UI could take on a workflow, switched off (the UI server's own configuration keys).
READ_ONLY_UI = {
    "disableWriteActions": True,
    "workflowTerminateDisabled": True,
    "workflowCancelDisabled": True,
    "workflowSignalDisabled": True,
    "workflowUpdateDisabled": True,
    "workflowResetDisabled": True,
    "batchActionsDisabled": True,
    "startWorkflowDisabled": True,
    "activityCommandsDisabled": True,
}


def ui_sign_in(issuer: str, client_id: str, client_secret: str, ui_url: str) -> dict[str, object]:
    """The UI server's `auth` section: people sign in at the identity provider (OpenID Connect), and the UI
    sends the access token it gets (one for Temporal, with the person's permissions) on every call."""
    return {
        "enabled": True,
        "providers": [
            {
                "label": "统一身份认证 Sign in",
                "type": "oidc",
                "providerUrl": issuer,
                "issuerUrl": issuer,
                "clientId": client_id,
                "clientSecret": client_secret,
                "scopes": ["openid"],
                "callbackUrl": f"{ui_url}/auth/sso/callback",
            }
        ],
    }


def ui_config(
    temporal_address: str,
    port: int,
    codec_endpoint: str | None,
    tls: dict[str, object] | None = None,
    auth: dict[str, object] | None = None,
) -> dict[str, object]:
    """The UI server's configuration: read-only, on loopback, decoding through the codec server if given.

    `tls` is the UI server's own `tls` section (caFile, certFile, keyFile, serverName, ...) for a
    frontend that requires client certificates, and `auth` its sign-in (`ui_sign_in`) for a frontend that
    checks tokens (stack/cluster.py).
    """
    config: dict[str, object] = {
        "temporalGrpcAddress": temporal_address,
        "host": "127.0.0.1",
        "port": port,
        "enableUi": True,
        "defaultNamespace": "default",
        "notifyOnNewVersion": False,
        "refreshInterval": "1m",
        "cors": {"cookieInsecure": True, "allowOrigins": [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]},
        **READ_ONLY_UI,
    }
    if codec_endpoint:
        config["codec"] = {"endpoint": codec_endpoint, "includeCredentials": True}
    if tls:
        config["tls"] = tls
    if auth:
        config["auth"] = auth
    return config


def start_ui(
    temporal_address: str,
    port: int,
    config_dir: Path,
    codec_endpoint: str | None,
    log_file: Path | None,
    tls: dict[str, object] | None = None,
    auth: dict[str, object] | None = None,
) -> subprocess.Popen[bytes]:
    """Run the UI server with `ui_config` (JSON is YAML, so the file needs no YAML writer); owner-only, as
    `auth` holds the UI's client secret."""
    ui_server = find_ui_server()
    if ui_server is None:
        raise RuntimeError("Temporal UI server not found: run scripts/install-temporal-cli (or set TEMPORAL_UI_SERVER)")
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / "readonly.yaml"
    config_file.touch(mode=0o600)
    config_file.chmod(0o600)
    config_file.write_text(json.dumps(ui_config(temporal_address, port, codec_endpoint, tls, auth)))
    command = [str(ui_server), "--root", str(config_dir.parent), "--config", config_dir.name, "--env", "readonly"]
    with open(log_file or os.devnull, "ab") as output:
        return subprocess.Popen([*command, "start"], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


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


def _stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class DevServer:
    process: subprocess.Popen[bytes]
    address: str
    ui_url: str
    db_file: Path
    ui_process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 15.0) -> None:
        _stop(self.ui_process, timeout)
        _stop(self.process, timeout)


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
        "--headless",
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
        *extra_flags,
    ]
    # The server writes to its own copy of the descriptor; this process need not keep one open.
    with open(log_file or os.devnull, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    ui_log = log_file.with_name(log_file.stem + "-ui.log") if log_file else None
    ui = start_ui(address, ui_port, db_file.parent / "ui-config", ui_codec_endpoint, ui_log)
    server = DevServer(process, address, f"http://127.0.0.1:{ui_port}", db_file, ui)
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
