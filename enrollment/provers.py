"""Where a front end gets the proof that goes with a message to a case (`starter.cases.Prover`).

A person's message is proven with the person's own access token (console,
`enroll` command line); an applicant's message, which the platform relays, is
proven with the API's own client token, whose role (`platform`) the case allows
for applicants' messages only. Either way the provider, not this process,
signs the proof, so no product process can speak for someone who did not sign in.
"""

from __future__ import annotations

from dataclasses import dataclass

from enrollment.oidc import IdentityProvider


@dataclass(frozen=True)
class PersonProver:
    """Proofs for the messages of the person whose access token this is."""

    provider: IdentityProvider
    access_token: str
    client_id: str
    client_secret: str | None = None

    async def __call__(self, case: str, action: str, digest: str) -> str:
        return await self.provider.exchange_for_proof(
            self.access_token,
            case=case,
            action=action,
            digest=digest,
            client_id=self.client_id,
            client_secret=self.client_secret,
        )


@dataclass(frozen=True)
class ClientProver:
    """Proofs for the messages a system relays as itself (the API, for applicants via the platform)."""

    provider: IdentityProvider
    client_id: str
    client_secret: str

    def acting_for(self, access_token: str) -> PersonProver:
        """Proofs for the person whose access token this is, asked by this client on their behalf: the
        provider allows it only for the clients this one may act for, and names this client in each proof."""
        return PersonProver(self.provider, access_token, self.client_id, self.client_secret)

    async def __call__(self, case: str, action: str, digest: str) -> str:
        token = await self.provider.client_credentials(self.client_id, self.client_secret)
        return await self.provider.exchange_for_proof(
            token, case=case, action=action, digest=digest, client_id=self.client_id, client_secret=self.client_secret
        )
