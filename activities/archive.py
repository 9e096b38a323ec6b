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
    # Release 1.4: the case's last steps (result sent to the platform) are written with the archive, one step
    # where there were two. Absent in requests of earlier cases, which wrote them on their own before.
    last_progress: CaseSnapshot | None = None


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
        """File the acceptance, review and result records of a finished case, and its last steps if given."""
        documents = cases.archive_documents(request.application, request.view, self._lookup_key)
        last = (request.last_progress, self._lookup_key) if request.last_progress is not None else None
        await cases.archive(self._pool, request.application.application_id, documents, last)
