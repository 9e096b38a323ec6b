"""The people who send cases their messages in tests, signed in at the stand-in provider as in production.

A reviewer or staff member signs in through the console's code flow (tests/support/identity.py) and
proves each message with their own access token; an applicant's message is proven by the API's
client, as the front-door API relays it for the platform.
"""

from __future__ import annotations

import time
from typing import Any

from temporalio.client import WorkflowHandle

from enrollment.case import ACTIONS, Claim, OfflineRegistration, Reassignment, Receipt, Reverification, Review
from enrollment.oidc import IdentityProvider
from enrollment.proofs import message_digest
from enrollment.provers import ClientProver, PersonProver
from starter.cases import Prover, proven
from tests.support.identity import CLIENT_SECRETS, CONSOLE, console_tokens

API_CLIENT = "enroll-api"


def reviewer_of(district: str) -> str:
    """The stand-in provider's first reviewer account of the district (standins/identity_provider/accounts.json)."""
    return f"r-{district}-1"


def staff_of(district: str) -> str:
    return f"s-{district}-1"


def review_by(district: str, decision: str = "approve", opinion: str = "同意入学") -> Review:
    """A decision by the district's reviewer (who must sign in and prove it: `People.send`)."""
    return Review(reviewer_id=reviewer_of(district), district_code=district, decision=decision, opinion=opinion)


class People:
    """Signs people in once (tokens kept while they last) and proves their messages."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.provider = IdentityProvider(issuer)
        self._tokens: dict[str, tuple[str, float]] = {}

    async def access_token(self, sub: str) -> str:
        token, until = self._tokens.get(sub, ("", 0.0))
        if until - time.monotonic() < 60:
            answer = await console_tokens(self.issuer, sub)
            token, until = answer["access_token"], time.monotonic() + float(answer["expires_in"])
            self._tokens[sub] = (token, until)
        return token

    def forget(self, sub: str) -> None:
        """Drop `sub`'s tokens (revoked at the provider, say): the next message signs them in afresh."""
        self._tokens.pop(sub, None)

    async def prover_for(self, message: Any) -> Prover:
        """The sender's prover: the reviewer or staff member the message names, else the API for the applicant."""
        if isinstance(message, Review):
            sub = message.reviewer_id
        elif isinstance(message, OfflineRegistration):
            sub = message.staff_id
        elif isinstance(message, Reverification):
            sub = message.requested_by
        elif isinstance(message, Claim):
            sub = message.reviewer_id
        elif isinstance(message, Reassignment):
            sub = message.supervisor_id
        else:
            return ClientProver(self.provider, API_CLIENT, CLIENT_SECRETS[API_CLIENT])
        return PersonProver(self.provider, await self.access_token(sub), CONSOLE, CLIENT_SECRETS[CONSOLE])

    async def proof_as(self, sub: str, handle: WorkflowHandle[Any, Any], message: Any) -> str:
        """The provider's proof of `message` to the case, asked with `sub`'s token, whoever the message names."""
        prove = PersonProver(self.provider, await self.access_token(sub), CONSOLE, CLIENT_SECRETS[CONSOLE])
        return await prove(handle.id, ACTIONS[type(message)], message_digest(message))

    async def prove(self, handle: WorkflowHandle[Any, Any], message: Any) -> Any:
        return await proven(message, handle.id, await self.prover_for(message))

    async def send(self, handle: WorkflowHandle[Any, Any], message: Any) -> Receipt:
        """Send the message, proven by its sender, and return the case's receipt."""
        receipt: Receipt = await handle.execute_update(
            ACTIONS[type(message)], await self.prove(handle, message), result_type=Receipt
        )
        return receipt
