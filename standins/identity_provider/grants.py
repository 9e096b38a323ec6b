"""What the provider remembers between requests: sessions, pending sign-ins, codes, refresh tokens, devices.

All of it is in memory: a restart signs everyone out, which a stand-in may do. Each kind of record
has (nearly) one lifetime, so records expire about in the order they were made and are pruned from
the front of an insertion-ordered dict as new ones arrive: memory stays bounded without a sweeper
task, and a record is never used past its expiry (`get` checks it).

Handlers run on one event loop, so no lock: the only await between reading a record and acting on it is
a password check, after which the handler looks at the record again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

# User codes: RFC 8628 §6.1's alphabet (no vowels, no look-alikes), 8 characters shown as XXXX-XXXX.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


@dataclass(frozen=True)
class Lifetimes:
    """Seconds each thing lives; tests shorten the device flow's polling interval."""

    access_token: int = 600
    id_token: int = 600
    proof: int = 300
    code: int = 60
    sign_in_form: int = 600
    device_code: int = 600
    device_interval: int = 5
    session: int = 8 * 3600


class _Expires(Protocol):
    @property
    def expires(self) -> float: ...


V = TypeVar("V", bound=_Expires)


class _Expiring(Generic[V]):
    """Records by key, each gone once its `expires` has passed."""

    def __init__(self) -> None:
        self._items: dict[str, V] = {}

    def put(self, key: str, value: V) -> None:
        now = time.time()
        while self._items:
            first = next(iter(self._items))
            if self._items[first].expires > now:
                break
            del self._items[first]
        self._items[key] = value

    def get(self, key: str) -> V | None:
        value = self._items.get(key)
        return value if value is not None and value.expires > time.time() else None

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def values(self) -> Iterator[V]:
        now = time.time()
        return (value for value in list(self._items.values()) if value.expires > now)


@dataclass
class Session:
    """A sign-in at the provider; every token issued under it carries its `sid`.

    A browser session is found again by its cookie, a different secret from the sid: the sid travels
    inside tokens that product processes read, the cookie must not.
    """

    sid: str
    sub: str
    expires: float
    cookie: str | None = None
    ended: bool = False
    refresh_tokens: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class AuthorizationRequest:
    """An /authorize request waiting for its person to sign in (or a code's origin)."""

    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    code_challenge: str
    # The sign-in cookie of the browser that opened the request: the form is answered from there only.
    browser: str
    expires: float


@dataclass
class AuthorizationCode:
    request: AuthorizationRequest
    sid: str
    expires: float
    used: bool = False


@dataclass
class RefreshGrant:
    sid: str
    client_id: str
    expires: float
    used: bool = False


@dataclass
class DeviceGrant:
    client_id: str
    user_code: str
    expires: float
    interval: int
    last_poll: float | None = None
    status: Literal["pending", "approved", "denied"] = "pending"
    sid: str | None = None


@dataclass(frozen=True)
class _Pointer:
    """A key that leads to another record (a cookie to its sid, a user code to its device code)."""

    target: str
    expires: float


class Grants:
    def __init__(self, lifetimes: Lifetimes):
        self.lifetimes = lifetimes
        self._sessions: _Expiring[Session] = _Expiring()
        self._cookies: _Expiring[_Pointer] = _Expiring()
        self._requests: _Expiring[AuthorizationRequest] = _Expiring()
        self._codes: _Expiring[AuthorizationCode] = _Expiring()
        self._refresh: _Expiring[RefreshGrant] = _Expiring()
        self._devices: _Expiring[DeviceGrant] = _Expiring()
        self._user_codes: _Expiring[_Pointer] = _Expiring()
        self._revoked: _Expiring[_Pointer] = _Expiring()

    # Sessions

    def start_session(self, sub: str, browser: bool = False) -> Session:
        session = Session(
            sid=secrets.token_urlsafe(16),
            sub=sub,
            expires=time.time() + self.lifetimes.session,
            cookie=secrets.token_urlsafe(32) if browser else None,
        )
        self._sessions.put(session.sid, session)
        if session.cookie:
            self._cookies.put(session.cookie, _Pointer(session.sid, session.expires))
        return session

    def session(self, sid: str) -> Session | None:
        """The session if it has neither ended nor expired."""
        session = self._sessions.get(sid)
        return session if session is not None and not session.ended else None

    def session_by_cookie(self, cookie: str) -> Session | None:
        pointer = self._cookies.get(cookie)
        return self.session(pointer.target) if pointer else None

    def end_session(self, sid: str) -> None:
        """Every token carrying the sid is inactive from now on; its refresh tokens are forgotten."""
        session = self._sessions.get(sid)
        if session is None:
            return
        session.ended = True
        for token in session.refresh_tokens:
            self._refresh.pop(token)
        if session.cookie:
            self._cookies.pop(session.cookie)

    def end_sessions_of(self, sub: str) -> None:
        for session in list(self._sessions.values()):
            if session.sub == sub:
                self.end_session(session.sid)

    # The authorization code flow

    def remember_request(
        self, client_id: str, redirect_uri: str, state: str, nonce: str, challenge: str, browser: str
    ) -> tuple[str, AuthorizationRequest]:
        """Keep a request until its person signs in; the id goes in the sign-in form instead of the request."""
        request_id = secrets.token_urlsafe(16)
        expires = time.time() + self.lifetimes.sign_in_form
        request = AuthorizationRequest(client_id, redirect_uri, state, nonce, challenge, browser, expires)
        self._requests.put(request_id, request)
        return request_id, request

    def pending_request(self, request_id: str) -> AuthorizationRequest | None:
        return self._requests.get(request_id)

    def forget_request(self, request_id: str) -> None:
        self._requests.pop(request_id)

    def issue_code(self, request: AuthorizationRequest, session: Session) -> str:
        code = secrets.token_urlsafe(32)
        self._codes.put(code, AuthorizationCode(request, session.sid, time.time() + self.lifetimes.code))
        return code

    def code(self, code: str) -> AuthorizationCode | None:
        """The code's record until it expires, used or not: a second use must be seen to be refused."""
        return self._codes.get(code)

    # Refresh tokens: each used once, then replaced (rotation); a second use ends the session.

    def issue_refresh(self, session: Session, client_id: str) -> str:
        token = secrets.token_urlsafe(32)
        self._refresh.put(token, RefreshGrant(session.sid, client_id, session.expires))
        session.refresh_tokens.add(token)
        return token

    def refresh_grant(self, token: str) -> RefreshGrant | None:
        grant = self._refresh.get(token)
        if grant is None or self.session(grant.sid) is None:
            return None
        return grant

    # The device authorization grant

    def start_device(self, client_id: str) -> tuple[str, DeviceGrant]:
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
        grant = DeviceGrant(
            client_id, user_code, time.time() + self.lifetimes.device_code, self.lifetimes.device_interval
        )
        self._devices.put(device_code, grant)
        self._user_codes.put(user_code, _Pointer(device_code, grant.expires))
        return device_code, grant

    def device(self, device_code: str) -> DeviceGrant | None:
        return self._devices.get(device_code)

    def device_by_user_code(self, user_code: str) -> DeviceGrant | None:
        """The pending grant a person typed the code of; dashes, spaces and case do not matter."""
        normalized = "".join(c for c in user_code.upper() if c in USER_CODE_ALPHABET)
        pointer = self._user_codes.get(normalized)
        grant = self.device(pointer.target) if pointer else None
        return grant if grant is not None and grant.status == "pending" else None

    def finish_device(self, device_code: str, grant: DeviceGrant) -> None:
        self._devices.pop(device_code)
        self._user_codes.pop(grant.user_code)

    # Revoked access tokens, remembered until they would have expired anyway.

    def revoke_access(self, jti: str, exp: float) -> None:
        self._revoked.put(jti, _Pointer(jti, exp))

    def access_revoked(self, jti: str) -> bool:
        return self._revoked.get(jti) is not None
