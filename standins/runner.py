"""Running the stand-ins: in a background thread for tests, or in the foreground from the CLI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from standins.applicants import FrontDoor
from standins.population import DEFAULT_POLICIES, Population, generate
from standins.server import create_app


class RunningStandins:
    """A stand-in server on its own thread and event loop; `stop()` (or leaving the `with`) ends it."""

    def __init__(
        self, population: Population | Mapping[str, Any], host: str, port: int, front_door: FrontDoor | None = None
    ):
        self.app = create_app(population, front_door)
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the listening
        # socket names its protocol, and without it every answer waits ~40 ms for a delayed ACK.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host = host
        self.port = self._socket.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{url_host}:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"standins-{self.port}", daemon=True
        )

    def start(self, timeout: float = 10.0) -> RunningStandins:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("stand-in server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> RunningStandins:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_thread(
    population: Population | Mapping[str, Any],
    host: str = "127.0.0.1",
    port: int = 0,
    front_door: FrontDoor | None = None,
) -> RunningStandins:
    """Start the stand-ins in a background thread; port 0 picks a free port (see `.base_url`)."""
    return RunningStandins(population, host, port, front_door).start()


def load_or_generate(
    data_dir: Path, seed: int = 42, families: int = 200, policies_dir: Path = DEFAULT_POLICIES
) -> Population:
    """The population in data_dir, generated and written there first if population.json is missing."""
    data_dir = Path(data_dir)
    if not (data_dir / "population.json").exists():
        generate(seed, families, policies_dir).write(data_dir)
    return Population.load(data_dir)


def serve(
    population: Population, host: str = "127.0.0.1", port: int = 8700, front_door: FrontDoor | None = None
) -> None:
    """Serve in the foreground until interrupted."""
    app = create_app(population, front_door)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", backlog=4096)
