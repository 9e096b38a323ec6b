"""Throw-away databases on the tests' PostgreSQL server, for tests that tamper with what they hold."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from store.database import open_pool


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on `admin_url`'s server (a superuser's), dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.asynccontextmanager
async def fresh_store(admin_url: str, max_size: int = 4) -> AsyncIterator[tuple[str, AsyncConnectionPool]]:
    """A new migrated database: its URL (as the superuser who owns it) and a pool on it."""
    async with fresh_database(admin_url) as url:
        pool = await open_pool(url, max_size=max_size)
        try:
            yield url, pool
        finally:
            await pool.close()
