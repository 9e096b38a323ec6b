"""The bureau's case store and archive (档案管理) in PostgreSQL.

Writes are idempotent (a retried activity never doubles a row), so Temporal
may run them as often as it needs.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel
from temporalio import activity

from enrollment.application import Application
from enrollment.case import CaseView
from enrollment.identity import LookupSecret
from store import cases
from store.cases import CaseSnapshot


class ArchiveRequest(BaseModel):
    application: Application
    view: CaseView


class ArchiveActivities:
    def __init__(self, pool: AsyncConnectionPool, lookup_key: LookupSecret):
        self._pool = pool
        self._lookup_key = lookup_key

    @activity.defn
    async def record_progress(self, snapshot: CaseSnapshot) -> None:
        """Write the case's current status and the steps it took since the last write."""
        await cases.save_progress(self._pool, snapshot, self._lookup_key)

    @activity.defn
    async def archive_case(self, request: ArchiveRequest) -> None:
        """File the acceptance, review and result records of a finished case."""
        documents = cases.archive_documents(request.application, request.view, self._lookup_key)
        await cases.archive(self._pool, request.application.application_id, documents)
