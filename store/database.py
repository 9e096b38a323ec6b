"""Connecting to PostgreSQL and keeping its schema current.

`DATABASE_URL` when set; otherwise an embedded server (the `pgserver`
package) with its data under the project's git-ignored `.data/postgres`,
shared by every process of the project on this machine and stopped when
the last one exits.
"""

from __future__ import annotations

import os
import re
import signal
import time
import warnings
from importlib import resources
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA = ROOT / ".data" / "postgres"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works: it only keeps two processes from migrating at once.
_MIGRATION_LOCK = 7_311_2024


class EmbeddedDatabase:
    """The project's embedded PostgreSQL, shared by every process that uses the same data folder.

    Only the process that had to start it stops it, so workers, the demo and a
    reviewer's `enroll` command can come and go around one server.
    """

    def __init__(self, data_dir: Path = EMBEDDED_DATA):
        self.data_dir = data_dir
        self._url: str | None = None
        self._started_here = False

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            return None
        return pid

    def url(self) -> str:
        if self._url is None:
            try:
                import pgserver
            except ImportError:
                raise RuntimeError(
                    "DATABASE_URL is not set and the embedded PostgreSQL is not installed (pip install '.[embedded]')"
                ) from None

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._started_here = self._postmaster_pid() is None
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset, as in containers and CI.
                warnings.simplefilter("ignore")
                self._url = pgserver.get_server(self.data_dir, cleanup_mode=None).get_uri()
        return self._url

    def stop_if_started_here(self, wait_seconds: float = 30.0) -> None:
        """Fast shutdown (SIGINT to the postmaster) when this process started the server."""
        pid = self._postmaster_pid() if self._started_here else None
        self._url, self._started_here = None, False
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + wait_seconds
        while self._postmaster_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)


embedded = EmbeddedDatabase()


def resolve_url(database_url: str | None) -> str:
    return database_url or embedded.url()


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the project, in order."""
    folder = resources.files("store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(url: str) -> list[str]:
    """Apply the migrations this database has not seen, each in its own transaction; return their names."""
    applied = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            # Looked up first: a service's role (store/roles.py) may read the table but not create in the schema.
            found = await (await conn.execute("SELECT to_regclass('schema_migrations')")).fetchone()
            if found is None or found[0] is None:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            done = {row[0] for row in await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()}
            for version, name, sql in migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied


async def open_pool(url: str, max_size: int = 10) -> AsyncConnectionPool:
    """A pool on a migrated database. Connections are checked before use, so a restarted server is survived."""
    await migrate(url)
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=max_size, open=False, check=AsyncConnectionPool.check_connection
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def ping(pool: AsyncConnectionPool) -> None:
    """Raise unless the case store answers (readiness probes)."""
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
