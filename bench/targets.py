"""The server a benchmark runs on: the dev server (the default) or the production topology (`--cluster`).

Both give the benchmark the same surface: a client connection, the environment the product's workers and the
ceiling's worker need, the case store's URLs, the processes to sample, and a storage snapshot.

- The dev server (stack/temporal_server.py): one `temporal server start-dev` process on SQLite; the case store in
  a fresh embedded PostgreSQL (pgserver) of its own.
- The cluster (stack/cluster.py): frontend, history, matching and the internal worker as separate processes on one
  PostgreSQL 15, clients with certificates (mTLS); the case store in that same PostgreSQL (database `enrollment`),
  the workers connecting as the case store's worker LOGIN role, the driver as its owner.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from temporalio.client import Client
from temporalio.converter import DataConverter

from stack import temporal_server
from stack.cluster import (
    NUM_HISTORY_SHARDS,
    SETUP_CLIENT,
    STORE_DATABASE,
    STORE_OWNER,
    TEMPORAL_DATABASES,
    UI_CLIENT,
    Cluster,
    ClusterIdentity,
    start_cluster,
)
from store import roles
from store.database import EmbeddedDatabase, migrate
from tests.support.identity import CLIENT_SECRETS
from workers.__main__ import WORKERS_IDENTITY_CLIENT

# The driver hands cases in and sends the reviews as the API does; the workers use their own certificate.
DRIVER_PROFILE = "api"
WORKER_PROFILE = "workers"
# The biggest tables listed in each storage snapshot.
TOP_TABLES = 6


@dataclass
class Target:
    kind: str  # "dev-server" or "cluster"
    address: str
    # The processes sampled for CPU and memory, by name (PostgreSQL's postmaster stands for it and its children).
    server_processes: dict[str, list[int]]
    store_url: str  # the driver's: the case store's owner (or the embedded superuser)
    worker_store_url: str  # the product's workers'
    # Added to the environment of the product's workers and of the ceiling's worker (a client profile).
    worker_env: dict[str, str]
    ceiling_worker_command: list[str]
    _connect: Callable[[DataConverter | None], Awaitable[Client]]
    _storage: Callable[[], dict[str, Any]]
    _stop: Callable[[], None]
    description: dict[str, Any] = field(default_factory=dict)

    async def connect(self, converter: DataConverter | None = None) -> Client:
        return await self._connect(converter)

    def storage(self) -> dict[str, Any]:
        """Bytes on disk now: each database's size and its biggest tables (see `database_sizes`)."""
        return self._storage()

    def stop(self) -> None:
        self._stop()


def database_sizes(url: str) -> dict[str, Any]:
    """`pg_database_size` of the URL's database and its biggest tables (`pg_total_relation_size`: heap, indexes
    and TOAST), with PostgreSQL's live row count of each. Only sizes and counts: no row is read."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None, "one row"
        tables = conn.execute(
            """
            SELECT c.relname, pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 2 DESC
            LIMIT %s
            """,
            (TOP_TABLES,),
        ).fetchall()
    return {
        "bytes": int(row[0]),
        "biggest_tables": [{"table": name, "bytes": int(size), "live_rows": int(rows)} for name, size, rows in tables],
    }


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


async def start_dev_server(work: Path, server_flags: tuple[str, ...]) -> Target:
    server = temporal_server.start(
        work / "temporal.db",
        port=temporal_server.free_port(),
        ui_port=temporal_server.free_port(),
        log_file=work / "temporal.log",
        extra_flags=server_flags,
    )
    database = EmbeddedDatabase(work / "postgres")

    def stop() -> None:
        server.stop()
        database.stop_if_started_here()

    try:
        await temporal_server.wait_until_serving(server.address)
        url = database.url()
    except BaseException:
        stop()
        raise

    async def connect(converter: DataConverter | None) -> Client:
        return await Client.connect(server.address, data_converter=converter or DataConverter.default)

    def storage() -> dict[str, Any]:
        # SQLite in WAL mode: what is not checkpointed yet is in the -wal file.
        files = [work / name for name in ("temporal.db", "temporal.db-wal", "temporal.db-shm")]
        return {
            "temporal (SQLite, one file for history and visibility)": {
                "bytes": sum(path.stat().st_size for path in files if path.exists())
            },
            "enrollment (case store)": database_sizes(url),
        }

    return Target(
        kind="dev-server",
        address=server.address,
        server_processes={
            "temporal_server": [server.process.pid],
            "postgres": [_postmaster_pid(work / "postgres")],
        },
        store_url=url,
        worker_store_url=url,
        worker_env={},
        ceiling_worker_command=[sys.executable, "-m", "bench.ceiling_worker", server.address],
        _connect=connect,
        _storage=storage,
        _stop=stop,
        description={"server": "Temporal CLI dev server (SQLite)", "case_store": "embedded PostgreSQL (pgserver)"},
    )


async def start_cluster_target(work: Path, issuer: str) -> Target:
    """The cluster, trusting the stand-in provider at `issuer` (its demo clients and secrets)."""
    identity = ClusterIdentity(issuer, CLIENT_SECRETS[SETUP_CLIENT], CLIENT_SECRETS[UI_CLIENT])
    cluster: Cluster = await start_cluster(
        work / "cluster", identity, port=temporal_server.free_port(), ui_port=temporal_server.free_port()
    )
    try:
        owner_url = cluster.database.url(STORE_OWNER, STORE_DATABASE)
        await migrate(owner_url)
        passwords = {service: cluster.database.password(roles.login_role(service)) for service in roles.SERVICES}
        urls = await roles.service_urls(owner_url, passwords)
    except BaseException:
        cluster.stop()
        raise

    async def connect(converter: DataConverter | None) -> Client:
        return await cluster.connect(DRIVER_PROFILE, data_converter=converter or DataConverter.default)

    def storage() -> dict[str, Any]:
        # As the database superuser, so every table's size is visible.
        return {
            name: database_sizes(cluster.database.url("postgres", name))
            for name in (*TEMPORAL_DATABASES, STORE_DATABASE)
        }

    assert cluster.database.process is not None, "started"
    processes = {f"temporal_{name}": [process.pid] for name, process in cluster.processes.items()}
    return Target(
        kind="cluster",
        address=cluster.address,
        server_processes={**processes, "postgres": [cluster.database.process.pid]},
        store_url=owner_url,
        worker_store_url=urls["worker"],
        worker_env={
            **cluster.profile_env(WORKER_PROFILE),
            "ENROLL_TEMPORAL_CLIENT_ID": WORKERS_IDENTITY_CLIENT,
            "ENROLL_IDENTITY_CLIENT_SECRET": CLIENT_SECRETS[WORKERS_IDENTITY_CLIENT],
        },
        ceiling_worker_command=[sys.executable, "-m", "bench.ceiling_worker_profile"],
        _connect=connect,
        _storage=storage,
        _stop=cluster.stop,
        description={
            "server": (
                "stack/cluster.py: frontend, internal-frontend, history, matching, worker processes on PostgreSQL 15,"
                " mTLS and the identity provider's tokens"
            ),
            "case_store": "database enrollment in the cluster's PostgreSQL",
            "history_shards": NUM_HISTORY_SHARDS,
        },
    )
