"""Intake decisions taken once per case from the deployment: the policy in force and the routing phase.

They run as an activity so the answer is written into the case's history and
the case keeps it to the end, even when policy files or settings change later.
"""

from __future__ import annotations

from temporalio import activity

from enrollment.case import CaseSetup, CaseSetupRequest
from enrollment.policy import policy_book
from enrollment.settings import Settings


class IntakeActivities:
    def __init__(self, settings: Settings):
        self._settings = settings

    @activity.defn
    async def load_case_setup(self, request: CaseSetupRequest) -> CaseSetup:
        return CaseSetup(
            policy=policy_book(self._settings.policies_dir).district(request.district_code),
            routing_phase=self._settings.routing_phase_at(request.received_at),
        )
