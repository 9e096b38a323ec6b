"""The identity provider's public keys, fetched for a case that must check a message's proof.

A case checks proofs itself, deterministically, so the keys it checks them
with must be part of its history: they come from this local activity, and the
case keeps them until a proof names a key it has not seen (the provider
rotated its keys), when it asks once more.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from enrollment.oidc import IdentityProvider
from enrollment.proofs import TrustedKeys


class TrustedKeysRequest(BaseModel):
    # True when a proof named a key the case does not have: skip any cached copy.
    refresh: bool = False


class IdentityActivities:
    def __init__(self, provider: IdentityProvider):
        self._provider = provider

    @activity.defn
    async def trusted_identity_keys(self, request: TrustedKeysRequest) -> TrustedKeys:
        jwks = await self._provider.jwks(refresh=request.refresh)
        return TrustedKeys(
            issuer=self._provider.issuer, jwks=jwks, fetched_at=activity.info().current_attempt_scheduled_time
        )
