"""The words a case is described in: its statuses, the reviewer's decisions, the verification outcomes.

Each value is defined here once, with its display label; the workflow, the
case store, the console, the command line and the saved queries read them.
"""

from __future__ import annotations

from typing import Literal

from enrollment.labels import Label

CaseStatus = Literal[
    "submitted",
    "verifying",
    "verification_delayed",
    "not_eligible",
    "awaiting_offline_registration",
    "awaiting_school_selection",
    "awaiting_review",
    "awaiting_supplement",
    "approved",
    "rejected",
    "withdrawn",
    "expired",
]
STATUS_LABELS: dict[CaseStatus, Label] = {
    "submitted": Label("已提交", "submitted"),
    "verifying": Label("核验中", "verifying"),
    # A department has not answered yet: the case keeps asking (an outage is a delay, not a failed check).
    "verification_delayed": Label("核验延迟", "verification delayed"),
    "not_eligible": Label("不符合受理条件", "not eligible"),
    "awaiting_offline_registration": Label("待线下登记", "awaiting offline registration"),
    "awaiting_school_selection": Label("待选择学校", "awaiting school selection"),
    "awaiting_review": Label("待审核", "awaiting review"),
    "awaiting_supplement": Label("待补充材料", "awaiting supplement"),
    "approved": Label("审核通过", "approved"),
    "rejected": Label("审核不通过", "rejected"),
    "withdrawn": Label("已撤回", "withdrawn"),
    "expired": Label("已过期", "expired"),
}
CASE_STATUSES: tuple[CaseStatus, ...] = tuple(STATUS_LABELS)
FINAL_STATUSES: frozenset[CaseStatus] = frozenset({"not_eligible", "approved", "rejected", "withdrawn", "expired"})
# The steps where the case waits for a person's message.
WAITING_STATUSES: frozenset[CaseStatus] = frozenset(
    {"awaiting_offline_registration", "awaiting_school_selection", "awaiting_review", "awaiting_supplement"}
)

Decision = Literal["approve", "reject", "request_supplement"]
DECISION_LABELS: dict[Decision, Label] = {
    "approve": Label("同意", "approve"),
    "reject": Label("不同意", "reject"),
    "request_supplement": Label("补充材料", "request supplement"),
}
DECISIONS: tuple[Decision, ...] = tuple(DECISION_LABELS)

Outcome = Literal["matched", "mismatch", "not_found", "unavailable", "not_required"]
OUTCOME_LABELS: dict[Outcome, Label] = {
    "matched": Label("一致", "matched"),
    "mismatch": Label("不一致", "mismatch"),
    "not_found": Label("未查到", "not found"),
    "unavailable": Label("暂不可用", "unavailable"),
    "not_required": Label("无需核验", "not required"),
}

# Outcomes a verification passes with: a case whose every outcome is one of these is verified (clean).
PASSED_OUTCOMES: frozenset[Outcome] = frozenset({"matched", "not_required"})

RoutingPhase = Literal["phase_one", "phase_two"]

for _literal, _labels in ((CaseStatus, STATUS_LABELS), (Decision, DECISION_LABELS), (Outcome, OUTCOME_LABELS)):
    if set(_literal.__args__) != set(_labels):  # type: ignore[attr-defined]
        raise RuntimeError(f"enrollment.statuses: every {_literal} value needs a label")
