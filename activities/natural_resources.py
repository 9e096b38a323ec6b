"""Natural Resources (自然资源厅): the guardians' real-estate titles (不动产权)."""

from __future__ import annotations

from temporalio import activity

from activities.gateway import Department
from enrollment.verification import VerificationRequest, VerificationResult, judge_property


class NaturalResourcesActivities(Department):
    VERIFIERS = ("property",)

    @activity.defn
    async def verify_property(self, request: VerificationRequest) -> VerificationResult:
        return judge_property(request, await self.answers_for(request))
