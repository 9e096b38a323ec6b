"""The identity provider (OpenID Connect) as product processes use it: verify, prove, introspect, revoke.

Everything is found from the issuer URL's discovery document, so production points at the
province's provider by configuration alone (the issuer URL and each process's client credentials).
Product processes hold only the provider's public keys: access tokens are verified locally (joserfc)
against its JWKS, cached for a minute; a token naming a key not in the cache makes one refetch, at
most once a minute, so rotation is picked up and garbage `kid`s cannot hammer the provider.

A local check says who a token was issued to, not whether it has since been revoked: processes that
keep a session (the console) ask `introspect` again every minute or so, which the provider answers
at once when an account is disabled or a session ended.

Every reason an `IdentityError` gives names what failed, never a token or secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import quote

import httpx
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ACCESS_AUDIENCE = "enrollment"
# The audience of tokens for Temporal's frontend (its global.authorization.audience): a token for the product is
# never accepted there, nor one for Temporal by the product.
TEMPORAL_AUDIENCE = "temporal"
ACCESS_TOKEN_TYPE = "at+jwt"
ALGORITHM = "ES256"
JWKS_MAX_AGE = 60.0
# Clock difference tolerated between the provider and this process, on exp and iat.
LEEWAY_SECONDS = 30
# A cached client token is replaced this long before it expires, so none is sent about to lapse.
CLIENT_TOKEN_MARGIN = 60.0
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
ACCESS_TOKEN_URN = "urn:ietf:params:oauth:token-type:access_token"
PROOF_TOKEN_URN = "urn:enrollment:token-type:message-proof"


class IdentityError(Exception):
    """A token or request the provider (or the local check) refused. `error`: the OAuth error code, if any."""

    def __init__(self, reason: str, error: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.error = error


class IdentityUnavailable(IdentityError):
    """The provider could not be reached or failed (HTTP 5xx): nothing was refused, try again later."""


class Identity(BaseModel):
    """Who an access token was issued to, for what client, in which provider session."""

    model_config = ConfigDict(frozen=True)

    sub: str
    role: str
    district: str | None
    jti: str
    sid: str
    client_id: str
    exp: int


class TokenSet(BaseModel):
    """A token response; the tokens are left out of repr so a logged TokenSet shows none."""

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str | None = Field(default=None, repr=False)
    id_token: str | None = Field(default=None, repr=False)


class DeviceFlow(BaseModel):
    """A started device authorization (RFC 8628): show `user_code` and `verification_uri`, then poll."""

    device_code: str = Field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    expires_in: int
    interval: int = 5


class _Discovery(BaseModel):
    issuer: str
    jwks_uri: str
    token_endpoint: str
    introspection_endpoint: str
    revocation_endpoint: str
    device_authorization_endpoint: str | None = None


class IdentityProvider:
    """The provider at `issuer_url`. Pass the process's `http` client to share its connections (and then
    close it yourself); otherwise `aclose()` closes the one made here."""

    def __init__(self, issuer_url: str, http: httpx.AsyncClient | None = None) -> None:
        self.issuer = issuer_url.rstrip("/")
        self._http = http if http is not None else httpx.AsyncClient(timeout=10.0)
        self._owns_http = http is None
        self._discovery: _Discovery | None = None
        self._jwks: dict[str, Any] | None = None
        self._jwks_fetched_at = float("-inf")
        self._unknown_kid_refetched_at = float("-inf")
        self._client_tokens: dict[tuple[str, str], tuple[str, float]] = {}

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def jwks(self, refresh: bool = False) -> dict[str, Any]:
        """The provider's public keys (its JWKS document), fetched at most once a minute unless `refresh`."""
        if refresh or self._jwks is None or time.monotonic() - self._jwks_fetched_at >= JWKS_MAX_AGE:
            metadata = await self._metadata()
            response = await self._request("GET", metadata.jwks_uri)
            self._jwks = _answer(response, "jwks")
            self._jwks_fetched_at = time.monotonic()
        return self._jwks

    async def verify_access_token(self, token: str, roles: Collection[str]) -> Identity:
        """Who the access token was issued to, if the provider signed it for this audience, it has not
        expired, and its role is one of `roles`; else IdentityError."""
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError):
            raise IdentityError("token: not a signed token") from None
        if header.get("typ") != ACCESS_TOKEN_TYPE:
            raise IdentityError(f"token: not an access token (typ must be {ACCESS_TOKEN_TYPE})")
        keys = await self._keys_naming(header.get("kid"))
        try:
            decoded = jwt.decode(token, KeySet.import_key_set({"keys": keys.get("keys", [])}), algorithms=[ALGORITHM])
        except InvalidKeyIdError:
            raise IdentityError("token: signed with a key the provider does not publish") from None
        except BadSignatureError:
            raise IdentityError("token: signature does not verify (forged or altered)") from None
        except (JoseError, ValueError):
            raise IdentityError("token: not a valid ES256 token") from None
        required: ClaimsOption = {"essential": True}
        registry = JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": ACCESS_AUDIENCE},
            exp=required,
            sub=required,
            jti=required,
            sid=required,
            client_id=required,
            role=required,
        )
        try:
            registry.validate(decoded.claims)
            identity = Identity.model_validate(decoded.claims)
        except ExpiredTokenError:
            raise IdentityError("token: expired") from None
        except ClaimError as error:
            raise IdentityError(f"token: claim {error.claim} is missing or wrong") from None
        except ValidationError:
            raise IdentityError("token: claims are malformed") from None
        if identity.role not in roles:
            raise IdentityError(f"token: a {identity.role} may not do this")
        return identity

    async def client_credentials(self, client_id: str, secret: str, audience: str = ACCESS_AUDIENCE) -> str:
        """An access token of the client itself for `audience`, reused until shortly before it expires."""
        cached = self._client_tokens.get((client_id, audience))
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        form = {"grant_type": "client_credentials"}
        if audience != ACCESS_AUDIENCE:
            form["audience"] = audience
        body = await self._token_request(form, client_id, secret, "client_credentials")
        tokens = TokenSet.model_validate(body)
        margin = min(CLIENT_TOKEN_MARGIN, tokens.expires_in / 2)
        self._client_tokens[client_id, audience] = (tokens.access_token, time.monotonic() + tokens.expires_in - margin)
        return tokens.access_token

    async def exchange_for_temporal(self, access_token: str, client_id: str) -> TokenSet:
        """A signed-in person's own token for Temporal's frontend, for their access token from `client_id`
        (RFC 8693): what their role may do there, or IdentityError if nothing."""
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": access_token,
            "subject_token_type": ACCESS_TOKEN_URN,
            "requested_token_type": ACCESS_TOKEN_URN,
            "audience": TEMPORAL_AUDIENCE,
        }
        return TokenSet.model_validate(await self._token_request(form, client_id, None, "token exchange"))

    async def exchange_for_proof(
        self,
        access_token: str,
        *,
        case: str,
        action: str,
        digest: str,
        client_id: str,
        client_secret: str | None = None,
    ) -> str:
        """A proof signed for exactly this message (`digest`) to this case as this action, by whoever the
        access token was issued to (RFC 8693 token exchange). A public client passes no secret."""
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": access_token,
            "subject_token_type": ACCESS_TOKEN_URN,
            "requested_token_type": PROOF_TOKEN_URN,
            "case": case,
            "action": action,
            "digest": digest,
        }
        body = await self._token_request(form, client_id, client_secret, "token exchange")
        if body.get("issued_token_type") != PROOF_TOKEN_URN or not isinstance(body.get("access_token"), str):
            raise IdentityError("token exchange: the provider did not issue a message proof")
        return str(body["access_token"])

    async def refresh(self, refresh_token: str, client_id: str, secret: str | None = None) -> TokenSet:
        """New tokens for a refresh token, which is used up: keep the new one the answer carries."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return TokenSet.model_validate(await self._token_request(form, client_id, secret, "refresh"))

    async def introspect(self, token: str, client_id: str, secret: str) -> bool:
        """Whether the provider still holds the token active (RFC 7662): not revoked, its session not
        ended, its account not disabled."""
        metadata = await self._metadata()
        response = await self._request(
            "POST", metadata.introspection_endpoint, data={"token": token}, auth=_basic(client_id, secret)
        )
        return _answer(response, "introspection").get("active") is True

    async def revoke(self, token: str, client_id: str, secret: str | None = None) -> None:
        """Revoke an access token, or a refresh token (which ends its session) (RFC 7009)."""
        metadata = await self._metadata()
        data, auth = _client_auth({"token": token}, client_id, secret)
        response = await self._request("POST", metadata.revocation_endpoint, data=data, auth=auth)
        if response.status_code != 200:
            _answer(response, "revocation")

    async def start_device_flow(self, client_id: str, scope: str = "openid") -> DeviceFlow:
        metadata = await self._metadata()
        if metadata.device_authorization_endpoint is None:
            raise IdentityError("device flow: the provider offers no device authorization endpoint")
        response = await self._request(
            "POST", metadata.device_authorization_endpoint, data={"client_id": client_id, "scope": scope}
        )
        return DeviceFlow.model_validate(_answer(response, "device authorization"))

    async def poll_device_flow(self, flow: DeviceFlow, client_id: str) -> TokenSet:
        """Wait for the person to sign in on the device page: poll every `interval` seconds (5 more after
        each `slow_down`) until tokens come, the person refuses, or the code expires."""
        metadata = await self._metadata()
        deadline = time.monotonic() + flow.expires_in
        interval = flow.interval
        form = {"grant_type": DEVICE_CODE, "device_code": flow.device_code, "client_id": client_id}
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() > deadline:
                raise IdentityError("device flow: the code expired before anyone signed in", "expired_token")
            try:
                return TokenSet.model_validate(
                    _answer(await self._request("POST", metadata.token_endpoint, data=form), "device flow")
                )
            except IdentityUnavailable:
                raise
            except IdentityError as refusal:
                if refusal.error == "slow_down":
                    interval += 5
                elif refusal.error != "authorization_pending":
                    raise

    async def _metadata(self) -> _Discovery:
        if self._discovery is None:
            response = await self._request("GET", f"{self.issuer}/.well-known/openid-configuration")
            try:
                discovery = _Discovery.model_validate(_answer(response, "discovery"))
            except ValidationError:
                raise IdentityError("discovery: the provider's metadata lacks a required endpoint") from None
            # OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
            if discovery.issuer.rstrip("/") != self.issuer:
                raise IdentityError("discovery: the provider names another issuer than the one configured")
            self._discovery = discovery
        return self._discovery

    async def _keys_naming(self, kid: object) -> dict[str, Any]:
        keys = await self.jwks()
        known = {key.get("kid") for key in keys.get("keys", [])}
        if kid not in known and time.monotonic() - self._unknown_kid_refetched_at >= JWKS_MAX_AGE:
            self._unknown_kid_refetched_at = time.monotonic()
            keys = await self.jwks(refresh=True)
        return keys

    async def _token_request(
        self, form: dict[str, str], client_id: str, secret: str | None, what: str
    ) -> dict[str, Any]:
        metadata = await self._metadata()
        data, auth = _client_auth(form, client_id, secret)
        return _answer(await self._request("POST", metadata.token_endpoint, data=data, auth=auth), what)

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise IdentityUnavailable(f"identity provider: cannot be reached ({type(error).__name__})") from None
        if response.status_code >= 500:
            raise IdentityUnavailable(f"identity provider: answered HTTP {response.status_code}")
        return response


def _basic(client_id: str, secret: str) -> httpx.BasicAuth:
    # RFC 6749 §2.3.1: the id and secret are form-encoded before they go into the Basic header.
    return httpx.BasicAuth(quote(client_id, safe=""), quote(secret, safe=""))


def _client_auth(
    form: dict[str, str], client_id: str, secret: str | None
) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Basic authentication for a confidential client; the client_id in the form for a public one."""
    if secret is None:
        return {**form, "client_id": client_id}, None
    return form, _basic(client_id, secret)


def _answer(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object the provider answered, or IdentityError with its OAuth error code and description."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict):
        return body
    if not isinstance(body, dict):
        raise IdentityError(f"{what}: the provider answered HTTP {response.status_code} without a JSON object")
    error = str(body.get("error", "")) or None
    description = str(body.get("error_description", ""))[:200]
    said = error or f"HTTP {response.status_code}"
    raise IdentityError(f"{what}: refused ({said}{': ' + description if description else ''})", error)
