"""Stand-in people: what a person does at the provider's pages, done over HTTP as their browser would.

The demo's reviewers and the tests sign in with these, through the same
authorization-code flow (with PKCE) and device page a person uses, with the
demo accounts' passwords (`demo-<sub>`, accounts.json). Stand-in only.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx

CONSOLE = "enroll-console"
CONSOLE_REDIRECT = "http://127.0.0.1:8090/auth/callback"
_REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


class SignInFailed(RuntimeError):
    """The provider did not answer as a sign-in goes; the message says which step."""


def _expect(response: httpx.Response, status: int, step: str) -> httpx.Response:
    if response.status_code != status:
        raise SignInFailed(f"{step}: HTTP {response.status_code}")
    return response


def password(sub: str) -> str:
    return f"demo-{sub}"


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class Authorization:
    """One authorization request's parameters, as a client keeps them until the callback."""

    redirect_uri: str = CONSOLE_REDIRECT
    client_id: str = CONSOLE
    state: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def params(self) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": challenge_of(self.verifier),
            "code_challenge_method": "S256",
        }


def callback_params(response: httpx.Response) -> dict[str, str]:
    """The query of the redirect the provider answered with (to the client's redirect URI)."""
    _expect(response, 303, "sign-in")
    return {name: values[0] for name, values in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def sign_in(http: httpx.AsyncClient, base_url: str, sub: str, authorization: Authorization) -> dict[str, str]:
    """Open /authorize, fill in the sign-in form as `sub`, and return the callback's parameters."""
    form = await http.get(f"{base_url}/authorize", params=authorization.params())
    _expect(form, 200, "sign-in form")
    match = _REQUEST_ID.search(form.text)
    if match is None:
        raise SignInFailed("sign-in form: no request id")
    answer = await http.post(
        f"{base_url}/authorize", data={"request_id": match.group(1), "username": sub, "password": password(sub)}
    )
    return callback_params(answer)


async def redeem(
    http: httpx.AsyncClient,
    base_url: str,
    code: str,
    authorization: Authorization,
    client_secret: str,
    **overrides: str,
) -> httpx.Response:
    """The console's call to /token for a code (its secret in HTTP Basic)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": authorization.redirect_uri,
        "code_verifier": authorization.verifier,
        **overrides,
    }
    return await http.post(f"{base_url}/token", data=data, auth=(authorization.client_id, client_secret))


async def console_tokens(base_url: str, sub: str, client_secret: str) -> dict[str, str]:
    """A person's tokens from the console's client, by the whole code flow in a fresh browser."""
    async with httpx.AsyncClient() as browser:
        authorization = Authorization()
        callback = await sign_in(browser, base_url, sub, authorization)
        response = await redeem(browser, base_url, callback["code"], authorization, client_secret)
    _expect(response, 200, "token")
    tokens: dict[str, str] = response.json()
    return tokens


async def approve_device(
    http: httpx.AsyncClient, base_url: str, user_code: str, sub: str, secret: str | None = None
) -> httpx.Response:
    """A person typing the user code on the device page and signing in."""
    data = {"user_code": user_code, "username": sub, "password": secret or password(sub), "decision": "approve"}
    return await http.post(f"{base_url}/device", data=data)
