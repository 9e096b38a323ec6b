"""The identity provider stand-in as tests drive it: people sign in over real HTTP, as a browser would.

The demo accounts and clients (standins/identity_provider/*.json) are used as shipped: each account's
password is `demo-<sub>`, and the confidential clients' secrets are below.
"""

from __future__ import annotations

import httpx

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

__all__ = [
    "CLIENT_SECRETS",
    "CONSOLE",
    "CONSOLE_REDIRECT",
    "Authorization",
    "approve_device",
    "callback_params",
    "challenge_of",
    "console_tokens",
    "password",
    "redeem",
    "sign_in",
]

CLIENT_SECRETS = {
    "enroll-console": "demo-console-secret",
    "enroll-api": "demo-api-secret",
    "enroll-codec": "demo-codec-secret",
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
