"""The saved queries ops use in the Temporal UI (and `temporal workflow list --query`).

Each is a visibility query over the case search attributes; the README lists
them and a test runs each against the dev server.
"""

from __future__ import annotations

import datetime as dt

FINAL = '("not_eligible", "approved", "rejected", "withdrawn", "expired")'


def awaiting(status: str, district_code: str) -> str:
    """Cases of a district waiting at one step (the district code is validated by the caller)."""
    return f'WorkflowType = "EnrollmentCase" AND CaseStatus = "{status}" AND DistrictCode = "{district_code}"'


def awaiting_review(district_code: str) -> str:
    return awaiting("awaiting_review", district_code)


def stuck_in_verification(started_before: dt.datetime) -> str:
    """Still verifying although started before the given time (a department down past the usual minutes)."""
    return (
        'WorkflowType = "EnrollmentCase" AND ExecutionStatus = "Running" AND CaseStatus = "verifying"'
        f' AND StartTime < "{started_before.astimezone(dt.timezone.utc).isoformat()}"'
    )


def result_not_yet_at_platform() -> str:
    """Decided (or closed) by the bureau but still running: the platform has not accepted the result yet."""
    return f'WorkflowType = "EnrollmentCase" AND ExecutionStatus = "Running" AND CaseStatus IN {FINAL}'


def expired() -> str:
    return 'WorkflowType = "EnrollmentCase" AND CaseStatus = "expired"'
