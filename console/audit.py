"""The console's audit trail: every view of a case, every action, sign-in and refusal, in PostgreSQL.

Events go to `store.audit.record` (the hash-chained `audit_events`, which auditors read with
`enroll audit`), and a log line says the same for whoever watches the logs. The trail answers
"who saw this child's data": a case page is shown only after its view was recorded, so a
case store that cannot record means no page (the error page), never an unrecorded view.

Never names or identity numbers: actors are account subjects, cases their application ids, and
`detail` holds decisions, statuses and reason codes. `record` refuses a value shaped like an
identity or phone number; such an event is still recorded, with its case id and detail withheld.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import JsonValue
from starlette.requests import HTTPConnection, Request

from console.backends import backends
from store.audit import AuditEvent, record

_ACTIONS_BY_LAST_SEGMENT = {"review": "review", "register": "register_offline", "queue": "queue", "offline": "offline"}


@dataclass(frozen=True)
class Actor:
    """Who the event is about: an account subject with its role and district, or the public."""

    sub: str
    role: str
    district: str | None = None


# The applicant's result lookup has no sign-in: who looked is only known by address.
PUBLIC = Actor("anonymous", "public")


async def audit(
    conn: HTTPConnection,
    actor: Actor,
    action: str,
    outcome: str,
    case_id: str | None = None,
    *,
    at_request: bool = True,
    **detail: JsonValue,
) -> None:
    """Record who did what from where (`conn.client`), on which case, and how it ended.

    `at_request=False` for what the request only noticed (a session that lapsed earlier): no source then.
    """
    source = conn.client.host if conn.client and at_request else None
    event = AuditEvent(
        actor=actor.sub,
        role=actor.role,
        district=actor.district,
        source=source,
        case_id=case_id,
        action=action,
        outcome=outcome,
        detail=detail,
    )
    pool = backends(conn).pool
    try:
        await record(pool, event)
    except ValueError as refused:  # a value shaped like personal data: keep the event, not what was typed
        structlog.get_logger().warning("console audit detail withheld", action=action, reason=str(refused))
        case_id, detail = None, {"withheld": "personal data shape"}
        await record(pool, event.model_copy(update={"case_id": case_id, "detail": detail}))
    # A fresh logger each time, so the current configuration (and a test's capture) applies.
    structlog.get_logger().info(
        "console action",
        subject=actor.sub,
        role=actor.role,
        district=actor.district,
        source=source,
        application_id=case_id,
        action=action,
        outcome=outcome,
        **detail,
    )


def action_of(request: Request) -> str:
    """The action a request stands for, when it is refused before its endpoint could name it."""
    last = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    return _ACTIONS_BY_LAST_SEGMENT.get(last, "view")
