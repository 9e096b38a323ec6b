"""Human Resources and Social Security (人力资源社会保障厅): the guardians' insurance contributions."""

from __future__ import annotations

from temporalio import activity

from activities.gateway import Department
from enrollment.verification import VerificationRequest, VerificationResult, judge_social_insurance


class SocialInsuranceActivities(Department):
    VERIFIERS = ("social_insurance",)

    @activity.defn
    async def verify_social_insurance(self, request: VerificationRequest) -> VerificationResult:
        return judge_social_insurance(request, await self.answers_for(request))
