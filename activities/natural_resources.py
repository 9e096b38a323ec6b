"""Natural Resources (自然资源厅): the guardians' real-estate titles (不动产权)."""

from __future__ import annotations

import asyncio

import httpx
from temporalio import activity

from activities.gateway import ask_about
from enrollment.verification import VerificationRequest, VerificationResult, judge_property


class NaturalResourcesActivities:
    def __init__(self, client: httpx.AsyncClient, base_url: str):
        self._client = client
        self._base_url = base_url.rstrip("/")

    @activity.defn
    async def verify_property(self, request: VerificationRequest) -> VerificationResult:
        url = f"{self._base_url}/property/v1/verify"
        answers = await asyncio.gather(*(ask_about(self._client, url, guardian) for guardian in request.guardians))
        return judge_property(request, list(answers))
