"""Running the stand-ins: in a background thread for tests, or in the foreground from the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from api.signing import CLIENT_ID
from standins.applicants import FrontDoor
from standins.population import DEFAULT_POLICIES, Population, generate
from standins.server import create_app
from standins.threaded import ThreadedServer, base_url, listen


class RunningStandins(ThreadedServer):
    """A stand-in server on its own thread and event loop; `stop()` (or leaving the `with`) ends it."""

    def __init__(
        self,
        population: Population | Mapping[str, Any],
        host: str,
        port: int,
        front_door: FrontDoor | None = None,
        signature_clients: Mapping[str, str] | None = None,
    ):
        self.app = create_app(population, front_door, signature_clients)
        super().__init__(listen(host, port), "standins")
        self.host = host
        self.base_url = base_url(host, self.port)
        self.serve(self.app, backlog=4096)


def start_in_thread(
    population: Population | Mapping[str, Any],
    host: str = "127.0.0.1",
    port: int = 0,
    front_door: FrontDoor | None = None,
    signature_clients: Mapping[str, str] | None = None,
) -> RunningStandins:
    """Start the stand-ins in a background thread; port 0 picks a free port (see `.base_url`).

    `signature_clients` ({client_id: secret}): every department and platform call must be signed by one.
    """
    return RunningStandins(population, host, port, front_door, signature_clients).start()


def read_signature_clients(path: Path) -> dict[str, str]:
    """The `{client_id: secret}` file of `serve --require-signature`; a ValueError says what is wrong, not a secret."""
    try:
        clients = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"not a readable JSON file ({type(error).__name__})") from None
    if not isinstance(clients, dict) or not clients:
        raise ValueError('must be a JSON object of at least one {"client_id": "secret"}')
    for client_id, secret in clients.items():
        if not CLIENT_ID.match(client_id):
            raise ValueError(f"client id {client_id!r}: lower-case letters, digits and '-', 2 to 64 of them")
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"client {client_id}: the secret must be a non-empty string")
    return clients


def load_or_generate(
    data_dir: Path, seed: int = 42, families: int = 200, policies_dir: Path = DEFAULT_POLICIES
) -> Population:
    """The population in data_dir, generated and written there first if population.json is missing."""
    data_dir = Path(data_dir)
    if not (data_dir / "population.json").exists():
        generate(seed, families, policies_dir).write(data_dir)
    return Population.load(data_dir)


def serve(
    population: Population,
    host: str = "127.0.0.1",
    port: int = 8700,
    front_door: FrontDoor | None = None,
    signature_clients: Mapping[str, str] | None = None,
) -> None:
    """Serve in the foreground until interrupted."""
    app = create_app(population, front_door, signature_clients)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", backlog=4096)
