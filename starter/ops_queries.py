"""The saved queries ops use in the Temporal UI (and `temporal workflow list --query`).

Each is a visibility query over the case search attributes; the README lists
them and a test runs each against the dev server.
"""

from __future__ import annotations

import datetime as dt

from enrollment.case import WORKFLOW_TYPE
from enrollment.statuses import CASE_STATUSES, FINAL_STATUSES

# In the order the statuses are listed, so the query text is stable.
FINAL = "(" + ", ".join(f'"{status}"' for status in CASE_STATUSES if status in FINAL_STATUSES) + ")"
CASES = f'WorkflowType = "{WORKFLOW_TYPE}"'


def awaiting(status: str, district_code: str) -> str:
    """Cases of a district waiting at one step (the district code is validated by the caller)."""
    return f'{CASES} AND CaseStatus = "{status}" AND DistrictCode = "{district_code}"'


def awaiting_review(district_code: str) -> str:
    return awaiting("awaiting_review", district_code)


def stuck_in_verification(started_before: dt.datetime) -> str:
    """Still verifying although started before the given time (a department down past the usual minutes)."""
    return (
        f'{CASES} AND ExecutionStatus = "Running" AND CaseStatus = "verifying"'
        f' AND StartTime < "{started_before.astimezone(dt.UTC).isoformat()}"'
    )


def result_not_yet_at_platform() -> str:
    """Decided (or closed) by the bureau but still running: the platform has not accepted the result yet."""
    return f'{CASES} AND ExecutionStatus = "Running" AND CaseStatus IN {FINAL}'


def expired() -> str:
    return f'{CASES} AND CaseStatus = "expired"'
