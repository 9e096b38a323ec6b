"""Public Security (公安厅): the student's household registration and the guardians' residence permits."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
from temporalio import activity

from activities.gateway import ask_about
from enrollment.china_time import china_date
from enrollment.verification import VerificationRequest, VerificationResult, judge_hukou, judge_residence_permits


class PublicSecurityActivities:
    def __init__(self, client: httpx.AsyncClient, base_url: str):
        self._client = client
        self._base_url = base_url.rstrip("/")

    @activity.defn
    async def verify_hukou(self, request: VerificationRequest) -> VerificationResult:
        answer = await ask_about(self._client, f"{self._base_url}/hukou/v1/verify", request.student)
        return judge_hukou(request, answer)

    @activity.defn
    async def verify_residence_permit(self, request: VerificationRequest) -> VerificationResult:
        url = f"{self._base_url}/residence-permit/v1/verify"
        answers = await asyncio.gather(*(ask_about(self._client, url, guardian) for guardian in request.guardians))
        # A permit is judged valid on the day it is checked, in China's calendar.
        return judge_residence_permits(request, list(answers), today=china_date(dt.datetime.now(dt.timezone.utc)))
