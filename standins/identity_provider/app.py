"""The identity provider stand-in as a Starlette app: browser pages, discovery, keys and administration.

Why the endpoints are written here instead of with Authlib's authorization server: Authlib's server
integrations target Flask and Django, and the project serves Starlette; what the provider must do
(PKCE S256 always, single-use codes, refresh-token rotation, token exchange into message proofs,
sessions that end at once) is a few hundred lines of plain handlers. Tokens are signed and verified
with joserfc, never by hand. Production replaces this process by the province's 统一身份认证: product
processes know only its issuer URL and their client credentials.
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from standins.identity_provider import endpoints, pages
from standins.identity_provider.accounts import GRANT_AUTHORIZATION_CODE, Directory
from standins.identity_provider.endpoints import OAuthError, read_form
from standins.identity_provider.grants import AuthorizationRequest, Grants, Lifetimes, Session
from standins.identity_provider.issuer import Issuer
from standins.identity_provider.keys import ALGORITHM, SigningKeys

log = structlog.get_logger("standins.identity_provider")

SESSION_COOKIE = "idp_session"
# Ties a sign-in form to the browser it was shown in, so a form posted from another site with the
# attacker's own account is refused (login CSRF).
SIGN_IN_COOKIE = "idp_sign_in"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# RFC 8252 §7.3: a loopback redirect URI matches on any port, so a console on a free port (tests, a
# laptop) needs no registration of its own. The stand-in extends this to its confidential client and
# to post-logout redirects; the real provider matches exactly.
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def create_app(
    issuer_url: str, state_dir: Path, directory: Directory, admin_secret: str, lifetimes: Lifetimes
) -> Starlette:
    """The provider at `issuer_url` (its own base URL), keeping its signing keys in `state_dir`."""
    issuer = Issuer(issuer_url.rstrip("/"), SigningKeys(state_dir), directory, Grants(lifetimes))
    app = Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", authorize, methods=["GET"]),
            Route("/authorize", sign_in, methods=["POST"]),
            Route("/token", endpoints.token, methods=["POST"]),
            Route("/device_authorization", endpoints.device_authorization, methods=["POST"]),
            Route("/device", device_page, methods=["GET"]),
            Route("/device", device_sign_in, methods=["POST"]),
            Route("/userinfo", endpoints.userinfo, methods=["GET", "POST"]),
            Route("/introspect", endpoints.introspect, methods=["POST"]),
            Route("/revoke", endpoints.revoke, methods=["POST"]),
            Route("/signout", signout, methods=["GET", "POST"]),
            Route("/admin/accounts/{sub}", admin_account, methods=["PATCH"]),
            Route("/admin/keys/rotate", admin_rotate_keys, methods=["POST"]),
        ]
    )
    app.state.issuer = issuer
    app.state.admin_secret = admin_secret
    return app


def _issuer(request: Request) -> Issuer:
    issuer: Issuer = request.app.state.issuer
    return issuer


# Discovery and keys


async def discovery(request: Request) -> Response:
    url = _issuer(request).url
    return JSONResponse(
        {
            "issuer": url,
            "authorization_endpoint": f"{url}/authorize",
            "token_endpoint": f"{url}/token",
            "device_authorization_endpoint": f"{url}/device_authorization",
            "userinfo_endpoint": f"{url}/userinfo",
            "jwks_uri": f"{url}/jwks",
            "introspection_endpoint": f"{url}/introspect",
            "revocation_endpoint": f"{url}/revoke",
            "end_session_endpoint": f"{url}/signout",
            "response_types_supported": ["code"],
            "grant_types_supported": endpoints.GRANT_TYPES,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid"],
            "claims_supported": ["sub", "role", "district", "sid", "nonce"],
            "authorization_response_iss_parameter_supported": True,
        }
    )


async def jwks(request: Request) -> Response:
    return JSONResponse(_issuer(request).keys.jwks(), headers={"Cache-Control": "max-age=60"})


# The authorization code flow (OpenID Connect Core §3.1, PKCE RFC 7636)


def _registered(redirect_uri: str, registered_uris: list[str]) -> bool:
    if redirect_uri in registered_uris:
        return True
    try:
        given = urlsplit(redirect_uri)
        given.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        return False
    if given.scheme != "http" or given.hostname not in _LOOPBACK or given.fragment or given.username:
        return False
    for registered in map(urlsplit, registered_uris):
        if (registered.scheme, registered.hostname, registered.path, registered.query) == (
            given.scheme,
            given.hostname,
            given.path,
            given.query,
        ):
            return True
    return False


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    """To the client's redirect URI with `params` added to whatever query it already has."""
    parts = urlsplit(uri)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=303, headers=pages.HEADERS)


async def authorize(request: Request) -> Response:
    issuer = _issuer(request)
    query = request.query_params
    if any(len(query.getlist(name)) > 1 for name in query):
        return pages.message("登录失败 Sign-in failed", "请求参数重复。A parameter was sent twice.", 400)
    client = issuer.directory.clients.get(query.get("client_id", ""))
    redirect_uri = query.get("redirect_uri", "")
    # An unknown client or redirect URI is told to the person, never redirected to (RFC 6749 §4.1.2.1).
    if (
        client is None
        or GRANT_AUTHORIZATION_CODE not in client.grants
        or not _registered(redirect_uri, client.redirect_uris)
    ):
        return pages.message("登录失败 Sign-in failed", "未登记的应用或回调地址。Unknown client or redirect URI.", 400)
    state, nonce, challenge = query.get("state", ""), query.get("nonce", ""), query.get("code_challenge", "")
    refusal = _authorization_refusal(
        query.get("response_type"), query.get("scope", ""), state, nonce, challenge, client.require_pkce
    )
    if refusal is None and (challenge or client.require_pkce) and query.get("code_challenge_method") != "S256":
        refusal = ("invalid_request", "code_challenge_method: S256 is required")
    if refusal is not None:
        params = {"error": refusal[0], "error_description": refusal[1], "iss": issuer.url}
        return _redirect(redirect_uri, {**params, **({"state": state} if state else {})})
    browser = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(16)
    request_id, pending = issuer.grants.remember_request(
        client.client_id, redirect_uri, state, nonce, challenge, browser
    )
    session = _browser_session(request)
    if session is not None and query.get("prompt") != "login":
        issuer.grants.forget_request(request_id)
        log.info("sign-in", sub=session.sub, client=client.client_id, outcome="session reused")
        return _code_redirect(issuer, pending, session)
    response = pages.render(
        "sign_in", title="登录 Sign in", client_id=client.client_id, request_id=request_id, username=""
    )
    response.set_cookie(SIGN_IN_COOKIE, browser, httponly=True, samesite="strict", secure=_secure(issuer))
    return response


def _secure(issuer: Issuer) -> bool:
    return issuer.url.startswith("https://")


def _authorization_refusal(
    response_type: str | None, scope: str, state: str, nonce: str, challenge: str, require_pkce: bool
) -> tuple[str, str] | None:
    if response_type != "code":
        return ("unsupported_response_type", "response_type: must be code")
    if "openid" not in scope.split():
        return ("invalid_scope", "scope: must include openid")
    if not state:
        return ("invalid_request", "state: required")
    if not nonce:
        return ("invalid_request", "nonce: required")
    if not challenge and require_pkce:
        return ("invalid_request", "code_challenge: required (PKCE with S256)")
    if challenge and not _CHALLENGE.match(challenge):
        return ("invalid_request", "code_challenge: must be BASE64URL(SHA-256(code_verifier)), 43 characters")
    return None


def _browser_session(request: Request) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    return _issuer(request).grants.session_by_cookie(cookie) if cookie else None


def _code_redirect(issuer: Issuer, pending: AuthorizationRequest, session: Session) -> RedirectResponse:
    code = issuer.grants.issue_code(pending, session)
    log.info("code issued", sub=session.sub, client=pending.client_id, grant="authorization_code", outcome="issued")
    return _redirect(pending.redirect_uri, {"code": code, "state": pending.state, "iss": issuer.url})


async def sign_in(request: Request) -> Response:
    """The sign-in form's answer: the person's account and password, for the request it names."""
    issuer = _issuer(request)
    try:
        form = await read_form(request)
    except OAuthError:
        return pages.message("登录失败 Sign-in failed", "表单无法读取。The form could not be read.", 400)
    request_id = form.get("request_id", "")
    pending = issuer.grants.pending_request(request_id)
    if pending is None or not hmac.compare_digest(pending.browser, request.cookies.get(SIGN_IN_COOKIE, "")):
        text = "登录请求已过期，请回到应用重新登录。The sign-in request has expired: go back to the application."
        return pages.message("登录失败 Sign-in failed", text, 400)
    username = form.get("username", "")
    account = await run_in_threadpool(issuer.directory.authenticate, username, form.get("password", ""))
    if account is None or account.disabled:  # disabled while its password was being checked
        _log_refused_sign_in(issuer, username, pending.client_id)
        return pages.render(
            "sign_in",
            400,
            title="登录 Sign in",
            error="账号或密码错误，或账号已停用。Wrong account or password, or the account is disabled.",
            client_id=pending.client_id,
            request_id=request_id,
            username=username,
        )
    old = _browser_session(request)
    if old is not None:
        issuer.grants.end_session(old.sid)  # one person per browser: signing in as another signs the first out
    issuer.grants.forget_request(request_id)
    session = issuer.grants.start_session(account.sub, browser=True)
    log.info("sign-in", sub=account.sub, client=pending.client_id, outcome="accepted")
    response = _code_redirect(issuer, pending, session)
    assert session.cookie is not None
    response.set_cookie(
        SESSION_COOKIE,
        session.cookie,
        max_age=issuer.grants.lifetimes.session,
        httponly=True,
        samesite="lax",
        secure=_secure(issuer),
    )
    return response


def _log_refused_sign_in(issuer: Issuer, username: str, client_id: str) -> None:
    """Who tried, only when the name is an account's: a name that is not may be a password typed in the wrong box."""
    sub = username if username in issuer.directory.accounts else None
    log.warning("sign-in", sub=sub, client=client_id, outcome="refused")


# The device page (RFC 8628 §3.3): a person types the user code the command line shows, and signs in.


async def device_page(request: Request) -> Response:
    user_code = request.query_params.get("user_code", "")
    return pages.render("device", title="授权设备 Allow a device", user_code=user_code, username="")


async def device_sign_in(request: Request) -> Response:
    issuer = _issuer(request)
    title = "授权设备 Allow a device"
    try:
        form = await read_form(request)
    except OAuthError:
        return pages.message(title, "表单无法读取。The form could not be read.", 400)
    user_code, username = form.get("user_code", ""), form.get("username", "")
    grant = issuer.grants.device_by_user_code(user_code)
    if grant is None:
        error = "用户码无效或已过期。The code is unknown or has expired."
        return pages.render("device", 400, title=title, error=error, user_code=user_code, username=username)
    if form.get("decision") == "deny":
        grant.status = "denied"
        log.info("device authorization", client=grant.client_id, outcome="denied")
        return pages.message(title, "已拒绝该设备。The device was not allowed.")
    account = await run_in_threadpool(issuer.directory.authenticate, username, form.get("password", ""))
    if account is None or account.disabled or grant.status != "pending":
        _log_refused_sign_in(issuer, username, grant.client_id)
        error = "账号或密码错误，或账号已停用。Wrong account or password, or the account is disabled."
        return pages.render("device", 400, title=title, error=error, user_code=user_code, username=username)
    session = issuer.grants.start_session(account.sub)
    grant.status, grant.sid = "approved", session.sid
    log.info("sign-in", sub=account.sub, client=grant.client_id, outcome="accepted", grant="device_code")
    return pages.message(title, "已授权，请回到命令行。Allowed: go back to your command line.")


# Sign-out (OpenID Connect RP-Initiated Logout)


async def signout(request: Request) -> Response:
    """Ends the browser's provider session and, given `id_token_hint`, the session that ID token names;
    then back to the client's registered `post_logout_redirect_uri`, or a page that says so."""
    issuer = _issuer(request)
    try:
        params = dict(request.query_params) if request.method == "GET" else await read_form(request)
    except OAuthError:
        params = {}
    hint = issuer.id_token_claims(params.get("id_token_hint", ""))
    hinted = issuer.grants.session(str(hint.get("sid"))) if hint else None
    for session in {s.sid: s for s in (_browser_session(request), hinted) if s is not None}.values():
        issuer.grants.end_session(session.sid)
        log.info("signed out", sub=session.sub, outcome="session ended")
    client = issuer.directory.clients.get(params.get("client_id") or str(hint.get("aud") if hint else ""))
    target = params.get("post_logout_redirect_uri", "")
    response: Response
    if client is not None and _registered(target, client.post_logout_redirect_uris):
        response = _redirect(target, {"state": params["state"]} if "state" in params else {})
    else:
        response = pages.message("已退出 Signed out", "您已退出统一身份认证。You are signed out.")
    response.delete_cookie(SESSION_COOKIE)
    return response


# Administration: disabling an account and rotating keys, for the admin bearer secret only.


class _AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disabled: bool


def _admin(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    secret: str = request.app.state.admin_secret
    return header[:7].lower() == "bearer " and hmac.compare_digest(header[7:].strip().encode(), secret.encode())


def _admin_refused() -> Response:
    return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def admin_account(request: Request) -> Response:
    if not _admin(request):
        return _admin_refused()
    issuer = _issuer(request)
    account = issuer.directory.accounts.get(request.path_params["sub"])
    if account is None:
        return JSONResponse({"error": "no such account"}, status_code=404)
    try:
        change = _AccountChange.model_validate_json(await request.body())
    except ValidationError:
        return JSONResponse({"error": 'the body must be {"disabled": true|false}'}, status_code=400)
    account.disabled = change.disabled
    if change.disabled:
        issuer.grants.end_sessions_of(account.sub)
    log.info("account changed", sub=account.sub, outcome="disabled" if change.disabled else "enabled")
    return JSONResponse({"sub": account.sub, "disabled": account.disabled})


async def admin_rotate_keys(request: Request) -> Response:
    if not _admin(request):
        return _admin_refused()
    kid = _issuer(request).keys.rotate()
    log.info("signing key rotated", kid=kid, outcome="rotated")
    return JSONResponse({"kid": kid})
