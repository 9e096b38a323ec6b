"""The console's audit trail: one log line per action, beside what the case records in its own timeline."""

from __future__ import annotations

import structlog
from starlette.requests import Request

from enrollment import tokens

_ACTIONS_BY_LAST_SEGMENT = {"review": "review", "register": "register_offline", "queue": "queue", "offline": "offline"}


def audit(claims: tokens.Claims, application_id: str | None, action: str, outcome: str, **extra: object) -> None:
    """Who (subject, role, district, token id) did what, on which case, and how it ended.

    Never names or identity numbers. A fresh logger each time, so the current configuration applies.
    """
    structlog.get_logger().info(
        "console action",
        subject=claims.sub,
        role=claims.role,
        district=claims.district,
        application_id=application_id,
        action=action,
        outcome=outcome,
        token=claims.jti,
        **extra,
    )


def action_of(request: Request) -> str:
    """The action a request stands for, when it is refused before its endpoint could name it."""
    last = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    return _ACTIONS_BY_LAST_SEGMENT.get(last, "view")
