"""Who is signed in: the signed identity token (`enrollment.tokens`) kept in a session cookie.

`TokenSession`, a Starlette authentication backend, turns the cookie into a
`Person` whose scopes are "authenticated" and the role ("reviewer" or
"staff"), so endpoints state what they need with `@requires(...)`. The token,
sign-in and sign-out, and the CSRF token bound to the token id all live here,
so that moving the console to OpenID Connect changes this module only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import urlencode

import structlog
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    UnauthenticatedUser,
    requires,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console.audit import action_of, audit
from console.forms import read_form
from console.pages import Refusal, error_page, render
from enrollment import tokens
from enrollment.labels import Label

log = structlog.get_logger()

SESSION_COOKIE = "enroll_console_session"
SIGNIN_COOKIE = "enroll_console_signin"
SIGNIN_FORM_SECONDS = 1800
CONSOLE_ROLES = ("reviewer", "staff")
ROLE_LABELS = {"reviewer": Label("审核员", "reviewer"), "staff": Label("服务点工作人员", "staff")}
LANDING_PAGES = {"reviewer": "/queue", "staff": "/offline"}
SIGNIN_REASONS = {
    "required": "请先登录。Please sign in.",
    "expired": "身份令牌已过期，请粘贴新的令牌。Your token has expired; paste a new one.",
    "invalid": "身份令牌无效，请重新登录。Your token is not valid here; sign in again.",
    "signed_out": "已退出。You are signed out.",
}
# Where sign-in may send you back to: the console's own pages, never another site.
_SAFE_NEXT = re.compile(r"^/(queue|offline|cases/[A-Za-z0-9][A-Za-z0-9-]{5,39})$")


class Person(BaseUser):
    """A signed-in reviewer or service-point staff member, with the CSRF token of this session."""

    def __init__(self, claims: tokens.Claims, csrf: str) -> None:
        self.claims, self.csrf = claims, csrf

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.sub

    @property
    def identity(self) -> str:
        return self.claims.sub

    @property
    def district(self) -> str:
        """Reviewer and staff tokens always name a district (`tokens.Claims` refuses them otherwise)."""
        return self.claims.district or ""

    @property
    def role_label(self) -> Label:
        return ROLE_LABELS[self.claims.role]

    @property
    def landing_page(self) -> str:
        return LANDING_PAGES[self.claims.role]


class SignedOut(UnauthenticatedUser):
    """Nobody is signed in, and why: "required" (no session), "expired" or "invalid"."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class TokenSession(AuthenticationBackend):
    """Verifies the session cookie's token with the deployment's token secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def verify(self, token: str) -> tokens.Claims:
        claims = tokens.verify(self._secret, token)
        if claims.role not in CONSOLE_ROLES:
            raise tokens.TokenError(
                f"token: the {claims.role} role has no business in the review console "
                "(reviewers and service-point staff only)"
            )
        return claims

    def person(self, claims: tokens.Claims) -> Person:
        """Bound to the token id, the CSRF token changes with every sign-in and needs no server state."""
        csrf = hmac.new(self._secret, f"console-csrf:{claims.jti}:{claims.sub}".encode(), hashlib.sha256)
        return Person(claims, csrf.hexdigest()[:32])

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        token = conn.cookies.get(SESSION_COOKIE)
        if not token:
            return AuthCredentials(), SignedOut("required")
        try:
            claims = self.verify(token)
        except tokens.TokenError as err:
            return AuthCredentials(), SignedOut("expired" if str(err).startswith("token: expired") else "invalid")
        return AuthCredentials(["authenticated", claims.role]), self.person(claims)


def signed_in(request: Request) -> Person:
    """The person behind a request that `@requires("authenticated")` let through."""
    person = request.user
    assert isinstance(person, Person)
    return person


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token is this session's: a form from elsewhere changes nothing."""
    fields = await read_form(request)
    person = signed_in(request)
    if not hmac.compare_digest(fields.get("csrf", ""), person.csrf):
        audit(person.claims, request.path_params.get("application_id"), action_of(request), "csrf_refused")
        raise Refusal(
            403,
            "表单已失效 Form check failed",
            "表单校验失败（CSRF），请刷新页面后重试。"
            "The form did not come from this session of the console; reload the page and try again.",
        )
    return fields


def to_signin(request: Request, reason: str) -> Response:
    """Back to sign-in with the reason, and for a page (not a form) the way back to it."""
    query = {"reason": reason}
    if request.method == "GET" and _SAFE_NEXT.match(request.url.path):
        query["next"] = request.url.path
    response = RedirectResponse(f"/signin?{urlencode(query)}", status_code=303)
    if reason != "required":
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def not_permitted(request: Request, exc: Exception) -> Response:
    """What `@requires` refuses: sign-in for whoever is not signed in, a 403 page for the wrong role."""
    user = request.user
    if not isinstance(user, Person):
        return to_signin(request, user.reason if isinstance(user, SignedOut) else "required")
    audit(user.claims, request.path_params.get("application_id"), action_of(request), "forbidden")
    message = f"{user.role_label.zh}无权使用这一页面。A {user.claims.role} cannot use this page."
    return error_page(request, Refusal(403, "无权限 Forbidden", message))


async def home(request: Request) -> Response:
    user = request.user
    return RedirectResponse(user.landing_page if isinstance(user, Person) else "/signin", status_code=303)


def signin_page(request: Request, reason: str | None, status_code: int = 200, next_path: str = "") -> Response:
    """The sign-in form, with a one-time nonce that must come back with the cookie set here."""
    nonce = secrets.token_urlsafe(24)
    context = {"title": "登录 Sign in", "reason": reason, "nonce": nonce, "next": next_path}
    response = render(request, "signin.html", context, status_code)
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=SIGNIN_FORM_SECONDS,
        path="/signin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def signin_form(request: Request) -> Response:
    next_path = request.query_params.get("next", "")
    reason = SIGNIN_REASONS.get(request.query_params.get("reason", ""))
    return signin_page(request, reason, next_path=next_path if _SAFE_NEXT.match(next_path) else "")


async def sign_in(request: Request) -> Response:
    fields = await read_form(request)
    next_path = fields.get("next", "") if _SAFE_NEXT.match(fields.get("next", "")) else ""
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(nonce, fields.get("nonce", "")):
        return signin_page(request, "登录表单已失效，请重试。The sign-in form expired; try again.", 403, next_path)
    session: TokenSession = request.app.state.token_session
    try:
        claims = session.verify(fields.get("token", ""))
    except tokens.TokenError as err:
        log.info("console sign-in refused", reason=str(err))
        return signin_page(request, f"无法登录 Cannot sign in — {err}", 401, next_path)
    audit(claims, None, "sign_in", "ok")
    response = RedirectResponse(next_path or LANDING_PAGES[claims.role], status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        fields["token"].strip(),
        max_age=max(0, claims.exp - int(time.time())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@requires("authenticated")
async def sign_out(request: Request) -> Response:
    await checked_form(request)  # signing out needs nothing from the form but its CSRF token
    audit(signed_in(request).claims, None, "sign_out", "ok")
    response = RedirectResponse("/signin?reason=signed_out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/", home, methods=["GET"]),
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", sign_in, methods=["POST"]),
    Route("/signout", sign_out, methods=["POST"]),
]
