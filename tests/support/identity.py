"""The identity provider stand-in as tests drive it: people sign in over real HTTP, as a browser would.

The demo accounts and clients (standins/identity_provider/*.json) are used as shipped: each account's
password is `demo-<sub>`, and the confidential clients' secrets are below.
"""

from __future__ import annotations

import httpx

from enrollment.oidc import DEVICE_CODE, IdentityProvider
from standins.identity_provider import people
from standins.identity_provider.people import (
    CONSOLE,
    CONSOLE_REDIRECT,
    Authorization,
    approve_device,
    callback_params,
    challenge_of,
    password,
    sign_in,
)
from starter.signin import CLI_CLIENT

__all__ = [
    "CLIENT_SECRETS",
    "CONSOLE",
    "CONSOLE_REDIRECT",
    "Authorization",
    "approve_device",
    "callback_params",
    "challenge_of",
    "cli_token",
    "console_tokens",
    "password",
    "redeem",
    "sign_in",
]

CLIENT_SECRETS = {
    "enroll-console": "demo-console-secret",
    "enroll-api": "demo-api-secret",
    "enroll-codec": "demo-codec-secret",
    "enroll-workers": "demo-workers-secret",
    "enroll-setup": "demo-setup-secret",
    "temporal-ui": "demo-temporal-ui-secret",
}


async def redeem(
    http: httpx.AsyncClient, base_url: str, code: str, authorization: Authorization, **overrides: str
) -> httpx.Response:
    """The console's call to /token for a code, with the client's demo secret."""
    secret = CLIENT_SECRETS[authorization.client_id]
    return await people.redeem(http, base_url, code, authorization, secret, **overrides)


async def console_tokens(base_url: str, sub: str) -> dict[str, str]:
    """A person's tokens from the console's client, by the whole code flow in a fresh browser."""
    return await people.console_tokens(base_url, sub, CLIENT_SECRETS[CONSOLE])


async def cli_token(issuer: str, sub: str) -> str:
    """An access token of `sub` from the command line's own client, as `enroll login` gets one: the device
    flow, approved on the provider's device page. (The command line proves messages with its client, and
    the provider exchanges a token only for the client it was issued to.)"""
    provider = IdentityProvider(issuer)
    try:
        flow = await provider.start_device_flow(CLI_CLIENT)
        async with httpx.AsyncClient() as browser:
            approved = await approve_device(browser, issuer, flow.user_code, sub)
            assert approved.status_code == 200, approved.text
            answer = await browser.post(
                f"{issuer}/token",
                data={"grant_type": DEVICE_CODE, "device_code": flow.device_code, "client_id": CLI_CLIENT},
            )
    finally:
        await provider.aclose()
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token
