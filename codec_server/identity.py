"""Who may decode, and the trace each decode leaves: the identity provider and the audit trail.

The codec server holds no database (least privilege), so it reports each
decode to the API's audit-event sink as itself (its own client at the
provider, role `service`). Both the verifier and the reporter open their HTTP
client on first use, on the server's own event loop.
"""

from __future__ import annotations

import httpx

from codec_server.app import Authorize, Caller, Decoded, NotAuthorized, OnDecode
from enrollment.oidc import IdentityError, IdentityProvider

# People who may read decoded payloads: ops run the season; auditors check who saw what.
DECODING_ROLES = ("ops", "auditor")


class _Lazy:
    """One IdentityProvider per process, made on the event loop that first needs it."""

    def __init__(self, issuer: str) -> None:
        self._issuer = issuer
        self._provider: IdentityProvider | None = None

    def __call__(self) -> IdentityProvider:
        if self._provider is None:
            self._provider = IdentityProvider(self._issuer)
        return self._provider


def provider_tokens(issuer: str) -> Authorize:
    """Access tokens the provider issued to ops or auditors, checked with its public keys."""
    provider = _Lazy(issuer)

    async def authorize(token: str) -> Caller:
        try:
            identity = await provider().verify_access_token(token, DECODING_ROLES)
        except IdentityError as err:
            raise NotAuthorized(err.reason) from None
        return Caller(sub=identity.sub, role=identity.role, jti=identity.jti, expires_at=identity.exp)

    return authorize


def audit_reporter(issuer: str, audit_url: str, client_id: str, client_secret: str) -> OnDecode:
    """Each answered decode into the audit trail, through the API, before the answer is sent."""
    provider = _Lazy(issuer)

    async def on_decode(decoded: Decoded) -> None:
        token = await provider().client_credentials(client_id, client_secret)
        caller = decoded.caller
        detail = {"payloads": decoded.payloads, "namespace": decoded.namespace, "token": caller.jti}
        # One event per application seen, so `enroll audit case` lists it; one without a case otherwise.
        async with httpx.AsyncClient(timeout=10) as http:
            for application in decoded.applications or (None,):
                event = {
                    "actor": caller.sub,
                    "role": caller.role,
                    "case_id": application,
                    "action": "codec_decode",
                    "outcome": "ok",
                    "detail": detail,
                }
                response = await http.post(
                    f"{audit_url.rstrip('/')}/v1/audit-events",
                    json=event,
                    headers={"authorization": f"Bearer {token}"},
                )
                response.raise_for_status()

    return on_decode
