"""Public Security (公安厅): the student's household registration and the guardians' residence permits."""

from __future__ import annotations

import datetime as dt

from temporalio import activity

from activities.gateway import Department
from enrollment.china_time import china_date
from enrollment.verification import VerificationRequest, VerificationResult, judge_hukou, judge_residence_permits


class PublicSecurityActivities(Department):
    VERIFIERS = ("hukou", "residence_permit")

    @activity.defn
    async def verify_hukou(self, request: VerificationRequest) -> VerificationResult:
        [answer] = await self.answers_for(request)
        return judge_hukou(request, answer)

    @activity.defn
    async def verify_residence_permit(self, request: VerificationRequest) -> VerificationResult:
        answers = await self.answers_for(request)
        # A permit is judged valid on the day it is checked, in China's calendar.
        return judge_residence_permits(request, answers, today=china_date(dt.datetime.now(dt.UTC)))
