"""The back-channel endpoints programs call: /token, /device_authorization, /introspect, /revoke, /userinfo.

Errors are RFC 6749 §5.2 JSON (`error`, `error_description`); a description names the rule that
failed and never echoes a token, code or secret. Every refusal at /token is logged like an issuance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from enrollment.proofs import ACTION_ROLES
from standins.identity_provider.accounts import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    Client,
)
from standins.identity_provider.issuer import ACCESS_AUDIENCE, TEMPORAL_AUDIENCE, Issuer

log = structlog.get_logger("standins.identity_provider")

ACCESS_TOKEN_URN = "urn:ietf:params:oauth:token-type:access_token"
PROOF_TOKEN_URN = "urn:enrollment:token-type:message-proof"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CASE = re.compile(r"^case-[A-Za-z0-9][A-Za-z0-9-]{5,39}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Answers a client is told to wait on: polled every few seconds, so not worth a log line each.
_ROUTINE = frozenset({"authorization_pending", "slow_down"})


class OAuthError(Exception):
    """A refusal, answered as RFC 6749 §5.2 JSON; `sub` is who it concerned, when known (for the log)."""

    def __init__(self, error: str, description: str, status: int = 400, sub: str | None = None):
        super().__init__(description)
        self.error, self.description, self.status, self.sub = error, description, status, sub

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers={**NO_STORE, **(headers or {})})


async def read_form(request: Request) -> dict[str, str]:
    """A url-encoded body within a size limit. A parameter sent twice is refused (RFC 6749 §3.2) and an
    empty one counts as absent (§3.1)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        raise OAuthError("invalid_request", f"the body must be {FORM_TYPE}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "the body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body cannot be read as a form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"{name}: sent more than once")
        if value:
            form[name] = value
    return form


def _required(form: dict[str, str], name: str) -> str:
    if name not in form:
        raise OAuthError("invalid_request", f"{name}: required")
    return form[name]


async def authenticate_client(request: Request, form: dict[str, str], issuer: Issuer) -> Client:
    """The client, from HTTP Basic (client_secret_basic) or the form (client_secret_post, or client_id
    alone for a public client); exactly one method (RFC 6749 §2.3)."""
    header = request.headers.get("authorization", "")
    basic = header[:6].lower() == "basic "
    if basic:
        if "client_secret" in form:
            raise OAuthError("invalid_request", "client authentication: use one method, not two")
        try:
            client_id, _, secret = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "client authentication: malformed Basic credentials", 401) from None
        client_id, given_secret = unquote_plus(client_id), unquote_plus(secret)
        if form.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id: differs from the authenticated client")
        secret_or_none: str | None = given_secret
    else:
        client_id, secret_or_none = form.get("client_id", ""), form.get("client_secret")
    if not client_id:
        raise OAuthError("invalid_client", "client authentication: required", 401)
    client = await run_in_threadpool(issuer.directory.authenticate_client, client_id, secret_or_none)
    if client is None:
        raise OAuthError("invalid_client", "client authentication failed", 401)
    return client


# /token


def _authorization_code(issuer: Issuer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    redirect_uri = _required(form, "redirect_uri")
    record = issuer.grants.code(_required(form, "code"))
    if record is None or record.request.client_id != client.client_id:
        raise OAuthError("invalid_grant", "code: unknown, expired or issued to another client")
    session = issuer.grants.session(record.sid)
    sub = session.sub if session else None
    if record.used:
        # RFC 6749 §4.1.2: a code used twice may have been stolen; what it gave is taken back.
        issuer.grants.end_session(record.sid)
        raise OAuthError("invalid_grant", "code: already used; the session it started has ended", sub=sub)
    record.used = True
    if record.request.redirect_uri != redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri: differs from the authorization request's", sub=sub)
    if record.request.code_challenge or client.require_pkce:
        verifier = _required(form, "code_verifier")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not _VERIFIER.match(verifier) or not hmac.compare_digest(challenge, record.request.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier: does not match the code_challenge (PKCE)", sub=sub)
    if session is None:
        raise OAuthError("invalid_grant", "the session has ended (signed out, or the account disabled)")
    _may_have_temporal_tokens(issuer, client, session.sub)
    refresh = GRANT_REFRESH_TOKEN in client.grants
    return issuer.person_tokens(session, client, "authorization_code", nonce=record.request.nonce, refresh=refresh)


def _refresh_token(issuer: Issuer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    grant = issuer.grants.refresh_grant(_required(form, "refresh_token"))
    if grant is None or grant.client_id != client.client_id:
        raise OAuthError("invalid_grant", "refresh_token: unknown, expired, revoked or issued to another client")
    session = issuer.grants.session(grant.sid)
    assert session is not None  # refresh_grant answers only for a live session
    if grant.used:
        # Each refresh token is replaced when used; a second use means two holders: end the session.
        issuer.grants.end_session(grant.sid)
        raise OAuthError("invalid_grant", "refresh_token: already used; the session has ended", sub=session.sub)
    grant.used = True
    return issuer.person_tokens(session, client, "refresh_token")


def _device_code(issuer: Issuer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    device_code = _required(form, "device_code")
    grant = issuer.grants.device(device_code)
    if grant is None or grant.client_id != client.client_id:
        raise OAuthError("expired_token", "device_code: unknown or expired; start again")
    now = time.time()
    if grant.last_poll is not None and now - grant.last_poll < grant.interval:
        grant.interval += 5  # RFC 8628 §3.5: and the client waits 5 s more from now on
        grant.last_poll = now
        raise OAuthError("slow_down", f"poll at most every {grant.interval} s")
    grant.last_poll = now
    if grant.status == "pending":
        raise OAuthError("authorization_pending", "the person has not signed in on the device page yet")
    issuer.grants.finish_device(device_code, grant)
    session = issuer.grants.session(grant.sid) if grant.sid else None
    if grant.status == "denied" or session is None:
        raise OAuthError("access_denied", "the sign-in was refused, or its session has ended")
    return issuer.person_tokens(session, client, "device_code")


def _may_have_temporal_tokens(issuer: Issuer, client: Client, sub: str) -> None:
    """A client that signs people in for Temporal (the Temporal UI) gives tokens only to the roles it names."""
    if client.audience != TEMPORAL_AUDIENCE:
        return
    role = issuer.directory.accounts[sub].role
    if role not in client.temporal.people:
        raise OAuthError("access_denied", f"a {role} has no access to Temporal", sub=sub)


def _audience(form: dict[str, str]) -> str:
    """Whom the token is for (`audience`, as RFC 8693 names the parameter): the product, unless Temporal."""
    audience = form.get("audience", ACCESS_AUDIENCE)
    if audience not in (ACCESS_AUDIENCE, TEMPORAL_AUDIENCE):
        raise OAuthError("invalid_target", f"audience: must be {ACCESS_AUDIENCE} or {TEMPORAL_AUDIENCE}")
    return audience


def _client_credentials(issuer: Issuer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if _audience(form) == ACCESS_AUDIENCE:
        if client.role is None:
            raise OAuthError("invalid_target", "audience: this client's own tokens are for Temporal alone")
        return issuer.client_token(client)
    if not client.temporal.own:
        raise OAuthError("invalid_target", "audience: this client has no access to Temporal")
    return issuer.client_temporal_token(client)


def _temporal_exchange(issuer: Issuer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    """A person's own token for Temporal's frontend, for the access token this client issued them: their
    role's `temporal.people` permissions, as their own `temporal` command sends it (TEMPORAL_API_KEY)."""
    subject = issuer.active(_required(form, "subject_token"))
    if subject is None:
        raise OAuthError("invalid_grant", "subject_token: not active (invalid, expired, revoked or account disabled)")
    if subject.client_id != client.client_id or subject.sub not in issuer.directory.accounts:
        raise OAuthError("invalid_grant", "subject_token: not a person's token issued to this client", sub=subject.sub)
    permissions = client.temporal.people.get(issuer.directory.accounts[subject.sub].role)
    if not permissions:
        raise OAuthError("invalid_target", f"audience: a {subject.role} has no access to Temporal", sub=subject.sub)
    session = issuer.grants.session(subject.sid)
    assert session is not None  # active() answers only for a live session
    return {
        "access_token": issuer.temporal_token(session, client, permissions, "token-exchange"),
        "issued_token_type": ACCESS_TOKEN_URN,
        "token_type": "Bearer",
        "expires_in": issuer.grants.lifetimes.access_token,
    }


def _token_exchange(issuer: Issuer, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if _required(form, "subject_token_type") != ACCESS_TOKEN_URN:
        raise OAuthError("invalid_request", f"subject_token_type: must be {ACCESS_TOKEN_URN}")
    if _audience(form) == TEMPORAL_AUDIENCE:
        if form.get("requested_token_type", ACCESS_TOKEN_URN) != ACCESS_TOKEN_URN:
            raise OAuthError("invalid_request", f"requested_token_type: must be {ACCESS_TOKEN_URN} for Temporal")
        return _temporal_exchange(issuer, client, form)
    if _required(form, "requested_token_type") != PROOF_TOKEN_URN:
        raise OAuthError("invalid_request", f"requested_token_type: must be {PROOF_TOKEN_URN}")
    case, action, digest = _required(form, "case"), _required(form, "action"), _required(form, "digest")
    if not _CASE.match(case):
        raise OAuthError("invalid_request", "case: must be a case's workflow id (case-<application id>)")
    if action not in ACTION_ROLES:
        raise OAuthError("invalid_request", f"action: must be one of {', '.join(sorted(ACTION_ROLES))}")
    if not _DIGEST.match(digest):
        raise OAuthError("invalid_request", "digest: must be 64 lower-case hex digits (SHA-256)")
    subject = issuer.active(_required(form, "subject_token"))
    if subject is None:
        raise OAuthError("invalid_grant", "subject_token: not active (invalid, expired, revoked or account disabled)")
    if subject.client_id == client.client_id:
        return issuer.proof(subject, case, action, digest)
    if client.may_act_for(subject.client_id, action) and subject.sub in issuer.directory.accounts:
        return issuer.proof(subject, case, action, digest, actor=client)
    raise OAuthError("invalid_grant", "subject_token: issued to another client", sub=subject.sub)


_GRANTS: dict[str, Callable[[Issuer, Client, dict[str, str]], dict[str, Any]]] = {
    GRANT_AUTHORIZATION_CODE: _authorization_code,
    GRANT_REFRESH_TOKEN: _refresh_token,
    GRANT_DEVICE_CODE: _device_code,
    GRANT_CLIENT_CREDENTIALS: _client_credentials,
    GRANT_TOKEN_EXCHANGE: _token_exchange,
}
GRANT_TYPES = list(_GRANTS)


async def token(request: Request) -> Response:
    issuer: Issuer = request.app.state.issuer
    grant_type: str | None = None
    client_id: str | None = None
    try:
        form = await read_form(request)
        grant_type = form.get("grant_type")
        client = await authenticate_client(request, form, issuer)
        client_id = client.client_id
        handler = _GRANTS.get(grant_type or "")
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"grant_type: must be one of {', '.join(GRANT_TYPES)}")
        if grant_type not in client.grants:
            raise OAuthError("unauthorized_client", f"grant_type: {grant_type} is not allowed for this client")
        return JSONResponse(handler(issuer, client, form), headers=NO_STORE)
    except OAuthError as error:
        level = log.debug if error.error in _ROUTINE else log.warning
        level("token refused", sub=error.sub, client=client_id, grant=grant_type, outcome=error.error)
        return error.response(_basic_challenge(request, error))


def _basic_challenge(request: Request, error: OAuthError) -> dict[str, str]:
    if error.status == 401 and request.headers.get("authorization", "")[:6].lower() == "basic ":
        return {"WWW-Authenticate": 'Basic realm="identity-provider"'}
    return {}


# The device authorization request (RFC 8628 §3.1-3.2)


async def device_authorization(request: Request) -> Response:
    issuer: Issuer = request.app.state.issuer
    try:
        form = await read_form(request)
        client = await authenticate_client(request, form, issuer)
        if GRANT_DEVICE_CODE not in client.grants:
            raise OAuthError("unauthorized_client", "this client may not use the device authorization grant")
    except OAuthError as error:
        return error.response(_basic_challenge(request, error))
    device_code, grant = issuer.grants.start_device(client.client_id)
    user_code = f"{grant.user_code[:4]}-{grant.user_code[4:]}"
    log.info("device authorization started", client=client.client_id, outcome="pending")
    body = {
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": f"{issuer.url}/device",
        "verification_uri_complete": f"{issuer.url}/device?user_code={user_code}",
        "expires_in": issuer.grants.lifetimes.device_code,
        "interval": grant.interval,
    }
    return JSONResponse(body, headers=NO_STORE)


# Introspection (RFC 7662), revocation (RFC 7009), userinfo (OpenID Connect Core §5.3)


async def introspect(request: Request) -> Response:
    issuer: Issuer = request.app.state.issuer
    try:
        form = await read_form(request)
        client = await authenticate_client(request, form, issuer)
        if not client.confidential:
            raise OAuthError("invalid_client", "introspection is for confidential clients", 401)
        token = _required(form, "token")
    except OAuthError as error:
        return error.response(_basic_challenge(request, error))
    claims = issuer.active(token)
    if claims is not None:
        return JSONResponse({"active": True, "token_type": "Bearer", **claims.model_dump()}, headers=NO_STORE)
    grant = issuer.grants.refresh_grant(token)
    session = issuer.grants.session(grant.sid) if grant and not grant.used else None
    if grant and session:
        body = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "sub": session.sub,
            "sid": session.sid,
            "exp": int(grant.expires),
        }
        return JSONResponse(body, headers=NO_STORE)
    return JSONResponse({"active": False}, headers=NO_STORE)


async def revoke(request: Request) -> Response:
    """Revoking an access token revokes it alone; revoking a refresh token ends its session (sign-out of a
    command line). An unknown token is answered 200, as RFC 7009 §2.2 asks."""
    issuer: Issuer = request.app.state.issuer
    try:
        form = await read_form(request)
        client = await authenticate_client(request, form, issuer)
        token = _required(form, "token")
        claims = issuer.active(token)
        grant = issuer.grants.refresh_grant(token)
        owner = claims.client_id if claims else grant.client_id if grant else client.client_id
        if owner != client.client_id:
            raise OAuthError("unauthorized_client", "token: issued to another client")
    except OAuthError as error:
        return error.response(_basic_challenge(request, error))
    if claims is not None:
        issuer.grants.revoke_access(claims.jti, claims.exp)
        log.info("token revoked", sub=claims.sub, client=client.client_id, outcome="revoked", jti=claims.jti)
    elif grant is not None:
        issuer.grants.end_session(grant.sid)
        log.info("session ended", client=client.client_id, outcome="refresh token revoked")
    return Response(status_code=200, headers=NO_STORE)


async def userinfo(request: Request) -> Response:
    issuer: Issuer = request.app.state.issuer
    header = request.headers.get("authorization", "")
    claims = issuer.active(header[7:].strip()) if header[:7].lower() == "bearer " else None
    if claims is None:
        challenge = 'Bearer error="invalid_token", error_description="the access token is not active"'
        return Response(status_code=401, headers={"WWW-Authenticate": challenge, **NO_STORE})
    return JSONResponse({"sub": claims.sub, "role": claims.role, "district": claims.district}, headers=NO_STORE)
