"""The provincial government service platform (省一体化政务服务平台).

Every message carries an idempotency key derived from the case, so however
often Temporal retries an activity, the platform records each message once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway import Department, new_request_id


class PlatformMessage(BaseModel):
    application_id: str
    idempotency_key: str
    body: dict[str, Any]


class PlatformReceipt(BaseModel):
    model_config = ConfigDict(strict=True)

    receipt_id: str = Field(min_length=1, max_length=128)
    duplicate: bool


class PlatformActivities(Department):
    async def _send(self, kind: str, message: PlatformMessage) -> PlatformReceipt:
        try:
            answer = await self.post(
                f"/v1/cases/{message.application_id}/{kind}",
                {"request_id": new_request_id(), **message.body},
                headers={"Idempotency-Key": message.idempotency_key},
            )
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            # The platform must receive what the case owes it: a refused request stays visible as a
            # retrying activity for ops to fix, instead of failing the case.
            raise ApplicationError(err.message, type="PlatformRejectedRequest") from None
        if answer.get("code") != "0000":
            raise ApplicationError(
                f"platform did not accept the {kind}: code {str(answer.get('code'))[:16]!r}", type="PlatformRefused"
            )
        try:
            return PlatformReceipt.model_validate(
                {"receipt_id": answer.get("receipt_id"), "duplicate": answer.get("duplicate", False)}
            )
        except ValidationError:
            raise ApplicationError(
                f"platform accepted the {kind} with a malformed receipt", type="DepartmentBadResponse"
            ) from None

    @activity.defn
    async def push_status(self, message: PlatformMessage) -> PlatformReceipt:
        return await self._send("status", message)

    @activity.defn
    async def notify_applicant(self, message: PlatformMessage) -> PlatformReceipt:
        return await self._send("notice", message)

    @activity.defn
    async def sync_result(self, message: PlatformMessage) -> PlatformReceipt:
        """Send the handling result (办结) so the applicant can look it up on the platform (一体反馈)."""
        return await self._send("result", message)
