"""An ASGI app served on a free localhost port, so tests talk to it over real HTTP as browsers and the CLI do."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn

from stack import temporal_server
from tests.support.waiting import wait_until


class ServedApp:
    """The app on its own thread (uvicorn runs its own event loop there) for an `async with` block."""

    def __init__(self, app: Any):
        self.port = temporal_server.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def __aenter__(self) -> ServedApp:
        self._thread.start()
        await wait_until(lambda: self._server.started, timeout=10, message=f"the app serving at {self.base_url}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
