"""Signing in and out with the identity provider: OpenID Connect's authorization code flow with PKCE.

Authlib's Starlette client does the protocol: the authorization request (state, nonce, PKCE S256
verifier), the code's redemption with the console's client secret, and the ID token's checks
(signature against the provider's keys, issuer, audience, expiry, nonce). Authlib keeps that
per-sign-in state in `request.session`; the console has no cookie sessions, so the state is kept
server-side (store/console_sessions.py) under a random id in a short-lived sign-in cookie, and given
to Authlib as the request's session. That cookie is SameSite=Lax: the provider's redirect back is a
navigation another site started, which a Strict cookie would not accompany.

Who signs in, and as what, comes from the provider's access token (verified with the provider's
keys by `IdentityProvider.verify_access_token`): role reviewer or staff, and their district. Every
sign-in, refused or not, and every sign-out is audited.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import httpx
import structlog
from authlib.common.errors import AuthlibBaseError
from joserfc.errors import JoseError
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import sessions
from console.audit import Actor, audit
from console.auth import LANDING_PAGES, PROVIDER_UNAVAILABLE, SIGNIN_REASONS, Person, checked_form, safe_next, signed_in
from console.backends import backends
from console.forms import read_form
from console.pages import render
from console.sessions import CONSOLE_ROLES, SESSION_COOKIE
from enrollment.oidc import IdentityError, TokenSet
from store import console_sessions

log = structlog.get_logger()

SIGNIN_COOKIE = "enroll_console_signin"
SIGNIN_PATH = "/auth"
SIGNIN_SECONDS = 600
UNKNOWN = Actor("unknown", "unknown")


def _pending_key(pending_id: str) -> bytes:
    return hashlib.sha256(f"console-signin:{pending_id}".encode()).digest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def signin_page(request: Request, reason: str | None, status_code: int = 200, next_path: str = "") -> Response:
    context = {"title": "登录 Sign in", "reason": reason, "next": next_path}
    return render(request, "signin.html", context, status_code)


async def home(request: Request) -> Response:
    """The role's list; for nobody, sign-in (with "signed out" when the provider's sign-out sent them here)."""
    user = request.user
    if isinstance(user, Person):
        return RedirectResponse(user.landing_page, status_code=303)
    back_from_signout = "state" in request.query_params
    return RedirectResponse("/signin?reason=signed_out" if back_from_signout else "/signin", status_code=303)


async def signin_form(request: Request) -> Response:
    user = request.user
    if isinstance(user, Person):
        return RedirectResponse(user.landing_page, status_code=303)
    reason = SIGNIN_REASONS.get(request.query_params.get("reason", ""))
    return signin_page(request, reason, next_path=safe_next(request.query_params.get("next", "")))


async def start_sign_in(request: Request) -> Response:
    """Off to the provider's sign-in page, the authorization request's state kept for the callback."""
    next_path = safe_next((await read_form(request)).get("next", ""))
    held = backends(request)
    request.scope["session"] = {}
    try:
        redirect: Response = await held.signin.authorize_redirect(request, str(request.url_for("auth_callback")))
    except (httpx.HTTPError, AuthlibBaseError, ValueError) as failed:
        return await _unavailable(request, failed, next_path)
    pending_id = secrets.token_urlsafe(32)
    pending = {"authlib": request.scope["session"], "next": next_path}
    await console_sessions.put_sign_in(held.pool, _pending_key(pending_id), pending, SIGNIN_SECONDS)
    redirect.status_code = 303
    redirect.set_cookie(
        SIGNIN_COOKIE,
        pending_id,
        max_age=SIGNIN_SECONDS,
        path=SIGNIN_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return redirect


async def _refused(request: Request, who: Actor, reason: str, status_code: int = 401) -> Response:
    await audit(request, who, "sign_in", "refused", reason=reason)
    response = signin_page(request, f"无法登录 Cannot sign in — {reason}", status_code)
    response.delete_cookie(SIGNIN_COOKIE, path=SIGNIN_PATH)
    return response


async def _redeem(request: Request, pending: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token response and the ID token's claims, once Authlib has checked the state, PKCE and the nonce."""
    issuer = request.query_params.get("iss")
    if issuer is not None and issuer != backends(request).identity.issuer:  # RFC 9207: a mixed-up provider
        raise IdentityError("the answer came from another issuer")
    request.scope["session"] = pending.get("authlib", {})
    try:
        answer: dict[str, Any] = await backends(request).signin.authorize_access_token(request)
    except (AuthlibBaseError, JoseError) as refused:
        raise IdentityError(f"the provider's answer was refused ({refused})") from None
    claims = answer.get("userinfo")
    if not claims:
        raise IdentityError("the provider sent no ID token")
    return answer, dict(claims)


async def _forget(request: Request, tokens: TokenSet) -> None:
    """Revoke tokens the console will not keep (a refused sign-in's), so none stays usable at the provider."""
    held = backends(request)
    try:
        if tokens.refresh_token:
            await held.provider.revoke(tokens.refresh_token, held.identity.client_id, held.identity.client_secret)
    except IdentityError as failed:
        log.warning("console sign-in: revocation failed", reason=failed.reason)


async def _unavailable(request: Request, failed: Exception, next_path: str = "") -> Response:
    log.warning("console sign-in: provider unavailable", error=type(failed).__name__)
    await audit(request, UNKNOWN, "sign_in", "unavailable", error=type(failed).__name__)
    return signin_page(request, PROVIDER_UNAVAILABLE, 503, next_path)


async def callback(request: Request) -> Response:
    """The provider's redirect back: redeem the code, verify who signed in, start the session."""
    held = backends(request)
    pending_id = request.cookies.get(SIGNIN_COOKIE, "")
    pending = await console_sessions.take_sign_in(held.pool, _pending_key(pending_id)) if pending_id else None
    if pending is None:
        return await _refused(request, UNKNOWN, "no sign-in of this browser is under way, or it took too long", 400)
    try:
        answer, claims = await _redeem(request, pending)
    except httpx.HTTPError as failed:
        return await _unavailable(request, failed)
    except IdentityError as refused:
        return await _refused(request, UNKNOWN, refused.reason)
    who = Actor(str(claims.get("sub")), str(claims.get("role")), claims.get("district"))
    tokens = TokenSet.model_validate(answer)
    try:
        identity = await held.provider.verify_access_token(tokens.access_token, CONSOLE_ROLES)
        if identity.sub != who.sub or identity.client_id != held.identity.client_id:
            raise IdentityError("the access token was not issued for this sign-in")
    except IdentityError as refused:
        await _forget(request, tokens)
        return await _refused(request, who, refused.reason, 403)
    if isinstance(request.user, Person):  # signing in again in this browser: the old session ends here
        await sessions.finish(request, request.user.session, "replaced", revoke=False)
    session_id = await sessions.begin(request, identity, tokens, request.app.state.session_policy)
    await audit(request, Actor(identity.sub, identity.role, identity.district), "sign_in", "ok", session=identity.sid)
    response = RedirectResponse(pending.get("next") or LANDING_PAGES[identity.role], status_code=303)
    response.set_cookie(SESSION_COOKIE, session_id, path="/", httponly=True, samesite="lax", secure=_secure(request))
    response.delete_cookie(SIGNIN_COOKIE, path=SIGNIN_PATH)
    return response


@requires("authenticated")
async def sign_out(request: Request) -> Response:
    """End the session and revoke its tokens here, then sign out of the provider too (RP-initiated logout)."""
    await checked_form(request)  # signing out needs nothing from the form but its CSRF token
    person = signed_in(request)
    id_token = person.session.id_token
    await sessions.finish(request, person.session, "signed_out")
    held = backends(request)
    target = "/signin?reason=signed_out"
    try:
        logout = await held.signin.create_logout_url(
            post_logout_redirect_uri=str(request.url_for("home")),
            id_token_hint=id_token,
            client_id=held.identity.client_id,
        )
        target = logout["url"]
    except (httpx.HTTPError, AuthlibBaseError, RuntimeError) as failed:  # no end_session_endpoint, or unreachable
        log.warning("console sign-out: provider sign-out unavailable", error=type(failed).__name__)
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/", home, methods=["GET"], name="home"),
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", start_sign_in, methods=["POST"]),
    Route(f"{SIGNIN_PATH}/callback", callback, methods=["GET"], name="auth_callback"),
    Route("/signout", sign_out, methods=["POST"]),
]
