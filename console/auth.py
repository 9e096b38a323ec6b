"""Who is signed in: a server-side session (console/sessions.py) behind a random id in a cookie.

`SessionAuth`, a Starlette authentication backend, turns the cookie into a `Person` whose scopes
are "authenticated" and the role ("reviewer" or "staff"), so endpoints state what they need with
`@requires(...)`. The sign-in itself (OpenID Connect) is console/signin.py.

The session cookie is HttpOnly and SameSite=Lax. Lax, not Strict, because the sign-in ends with a
navigation that starts at the provider's site: a Strict cookie is not sent on a navigation (or
redirect chain) that another site started, so the page the callback sends the person to would not
see the new session. Lax still keeps the cookie off cross-site POSTs, subrequests and frames; every
form also carries a CSRF token derived from the session id (`csrf_token`), and no GET changes
anything. The cookie is Secure whenever the console is reached over https.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlencode

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from console import sessions
from console.audit import Actor, action_of, audit
from console.backends import backends
from console.forms import read_form
from console.pages import Refusal, error_page
from console.sessions import SESSION_COOKIE, SessionPolicy, csrf_token
from enrollment.labels import Label
from enrollment.oidc import IdentityUnavailable
from enrollment.provers import PersonProver
from store.console_sessions import StoredSession

ROLE_LABELS = {
    "reviewer": Label("审核员", "reviewer"),
    "staff": Label("服务点工作人员", "staff"),
    "supervisor": Label("区县主管", "supervisor"),
}
LANDING_PAGES = {"reviewer": "/queue", "staff": "/offline", "supervisor": "/supervisor"}
SIGNIN_REASONS = {
    "required": "请先登录。Please sign in.",
    "signed_out": "已退出。You are signed out.",
    "expired": "会话已过期，请重新登录。Your session has expired; sign in again.",
    "ended": "会话已结束：账号已停用，或已在统一身份认证退出。"
    "Your session was ended at the identity provider (account disabled, or signed out there).",
}
PROVIDER_UNAVAILABLE = (
    "统一身份认证暂时无法访问，请稍后再试。The identity provider cannot be reached right now; try again shortly."
)
# Where sign-in may send you back to: the console's own pages, never another site.
_SAFE_NEXT = re.compile(r"^/(queue|offline|cases/[A-Za-z0-9][A-Za-z0-9-]{5,39})$")


def safe_next(path: str) -> str:
    return path if _SAFE_NEXT.match(path) else ""


class Person(BaseUser):
    """A signed-in reviewer or service-point staff member, as their session holds them."""

    def __init__(self, session: StoredSession, session_id: str) -> None:
        self.session = session
        self.csrf = csrf_token(session_id)

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.session.subject

    @property
    def identity(self) -> str:
        return self.session.subject

    @property
    def role(self) -> str:
        return self.session.role

    @property
    def district(self) -> str:
        """Reviewers and staff always have one: their access token's role is checked to be one of the two."""
        return self.session.district or ""

    @property
    def actor(self) -> Actor:
        return sessions.actor_of(self.session)

    @property
    def role_label(self) -> Label:
        return ROLE_LABELS[self.role]

    @property
    def landing_page(self) -> str:
        return LANDING_PAGES[self.role]


class SignedOut(UnauthenticatedUser):
    """Nobody is signed in, and why (a key of SIGNIN_REASONS)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ProviderUnavailable(AuthenticationError):
    """The session could not be confirmed because the identity provider did not answer."""


class SessionAuth(AuthenticationBackend):
    """Finds the cookie's session and has it confirmed (console/sessions.py) on every request."""

    def __init__(self, policy: SessionPolicy) -> None:
        self.policy = policy

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        session_id = conn.cookies.get(SESSION_COOKIE)
        if not session_id:
            return AuthCredentials(), SignedOut("required")
        try:
            found = await sessions.current(conn, session_id, self.policy)
        except IdentityUnavailable:
            raise ProviderUnavailable() from None
        if isinstance(found, str):
            return AuthCredentials(), SignedOut(found)
        person = Person(found, session_id)
        return AuthCredentials(["authenticated", person.role]), person


def provider_unavailable(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """The middleware's answer when a session could not be confirmed: try again, the session is kept."""
    return error_page(Request(conn.scope), Refusal(503, "暂时无法访问 Unavailable", PROVIDER_UNAVAILABLE))


def signed_in(request: Request) -> Person:
    """The person behind a request that `@requires("authenticated")` let through."""
    person = request.user
    assert isinstance(person, Person)
    return person


def prover(request: Request) -> PersonProver:
    """Proofs for the signed-in person's messages, from their own access token (refreshed if it was near expiry)."""
    held, person = backends(request), signed_in(request)
    assert person.session.access_token is not None  # a live session holds its tokens
    client = held.identity
    return PersonProver(held.provider, person.session.access_token, client.client_id, client.client_secret)


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token is this session's: a form from elsewhere changes nothing."""
    fields = await read_form(request)
    person = signed_in(request)
    if not hmac.compare_digest(fields.get("csrf", ""), person.csrf):
        case_id = request.path_params.get("application_id")
        await audit(request, person.actor, action_of(request), "csrf_refused", case_id)
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
    if request.method == "GET" and safe_next(request.url.path):
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
    await audit(request, user.actor, action_of(request), "forbidden", request.path_params.get("application_id"))
    message = f"{user.role_label.zh}无权使用这一页面。A {user.role} cannot use this page."
    return error_page(request, Refusal(403, "无权限 Forbidden", message))
