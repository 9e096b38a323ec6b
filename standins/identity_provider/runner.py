"""Running the provider: on a thread for tests (`start_in_thread`), or in the foreground from the CLI.

The listening socket is bound before the app is made, because the issuer URL (which every token
names) is the provider's own base URL, and with port 0 the port is known only once bound.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from standins.identity_provider.accounts import DEFAULT_ACCOUNTS, DEFAULT_CLIENTS, Directory
from standins.identity_provider.app import create_app
from standins.identity_provider.grants import Lifetimes
from standins.threaded import ThreadedServer, base_url, listen

ADMIN_SECRET_FILE = "admin-secret"


def load_admin_secret(state_dir: Path, given: str | None = None) -> str:
    """The admin bearer secret: the one given, else the state dir's (made on first start, owner-only)."""
    if given:
        return given
    path = Path(state_dir) / ADMIN_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text("utf-8").strip()


class RunningIdentityProvider(ThreadedServer):
    """The provider on its own thread and event loop; `stop()` (or leaving the `with`) ends it."""

    def __init__(
        self,
        state_dir: Path,
        directory: Directory,
        admin_secret: str,
        lifetimes: Lifetimes,
        host: str,
        port: int,
    ):
        self.state_dir = Path(state_dir)
        super().__init__(listen(host, port), "identity")
        self.base_url = base_url(host, self.port)
        self.admin_secret = admin_secret
        self.app: Starlette = create_app(self.base_url, state_dir, directory, admin_secret, lifetimes)
        self.serve(self.app)


def start_in_thread(
    state_dir: Path,
    *,
    accounts: Path = DEFAULT_ACCOUNTS,
    clients: Path = DEFAULT_CLIENTS,
    admin_secret: str | None = None,
    lifetimes: Lifetimes | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningIdentityProvider:
    """Start the provider in a background thread; port 0 picks a free port (`.base_url` is the issuer)."""
    directory = Directory.load(accounts, clients)
    secret = load_admin_secret(state_dir, admin_secret)
    return RunningIdentityProvider(state_dir, directory, secret, lifetimes or Lifetimes(), host, port).start()


def serve(
    state_dir: Path,
    directory: Directory,
    admin_secret: str,
    host: str = "127.0.0.1",
    port: int = 8900,
    issuer_url: str | None = None,
) -> None:
    """Serve in the foreground until interrupted."""
    app = create_app(issuer_url or base_url(host, port), state_dir, directory, admin_secret, Lifetimes())
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None)
