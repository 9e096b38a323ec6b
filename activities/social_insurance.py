"""Human Resources and Social Security (人力资源社会保障厅): the guardians' insurance contributions."""

from __future__ import annotations

import asyncio

import httpx
from temporalio import activity

from activities.gateway import ask_about
from enrollment.verification import VerificationRequest, VerificationResult, judge_social_insurance


class SocialInsuranceActivities:
    def __init__(self, client: httpx.AsyncClient, base_url: str):
        self._client = client
        self._base_url = base_url.rstrip("/")

    @activity.defn
    async def verify_social_insurance(self, request: VerificationRequest) -> VerificationResult:
        url = f"{self._base_url}/v1/contributions/verify"
        answers = await asyncio.gather(*(ask_about(self._client, url, guardian) for guardian in request.guardians))
        return judge_social_insurance(request, list(answers))
