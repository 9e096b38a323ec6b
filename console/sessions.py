"""Console sessions: server-side, bounded in time, and confirmed with the identity provider.

The browser's cookie holds only a random session id; the row (store/console_sessions.py) holds
who signed in and the provider's tokens. On every request a session is:

- ended when its absolute lifetime (8 h) or its idle timeout (30 min) has passed;
- refreshed, when its access token is about to expire, with its refresh token (rotated by the
  provider), taking role and district from the new access token;
- otherwise re-checked at the provider's /introspect when the last check is older than `recheck`
  (a minute), so a person disabled at the provider, or signed out of it, is signed out here
  within a minute.

Refresh and re-check happen with the row locked, so concurrent requests of one session neither
refresh twice (the provider would take the reused refresh token for theft and end the session)
nor ask the provider more than once. Every end of a session is audited.

The row's tokens are sealed with a key derived from the session id (`TokenSeal`), which only the
browser's cookie holds: whoever reads the table, a backup or the console's database role, gets
no token that signs anyone in or proves a message.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from psycopg import AsyncConnection
from starlette.requests import HTTPConnection

from console.audit import Actor, audit
from console.backends import Backends, backends
from enrollment.oidc import Identity, IdentityError, IdentityUnavailable, TokenSet
from store import console_sessions
from store.console_sessions import StoredSession, Tokens

log = structlog.get_logger()

SESSION_COOKIE = "enroll_console_session"
CONSOLE_ROLES = ("reviewer", "staff", "supervisor")
# Why a session ended (its row's end_reason) -> what sign-in tells whoever comes back with its cookie.
_SIGNIN_REASON_AFTER = {"signed_out": "signed_out", "expired": "expired", "idle": "expired", "lapsed": "expired"}


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lasts, and how often (and how early) the provider is asked about it."""

    lifetime: dt.timedelta = dt.timedelta(hours=8)
    idle: dt.timedelta = dt.timedelta(minutes=30)
    recheck: dt.timedelta = dt.timedelta(seconds=60)
    # An access token with less than this left is refreshed before the request uses it.
    refresh_margin: dt.timedelta = dt.timedelta(seconds=60)


def id_hash(session_id: str) -> bytes:
    """What the store keys a session by: a leaked table gives no cookie."""
    return hashlib.sha256(f"console-session:{session_id}".encode()).digest()


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: derived from the id (which only the cookie holds), different from its hash."""
    return hashlib.sha256(f"console-csrf:{session_id}".encode()).hexdigest()[:32]


_TOKEN_COLUMNS = ("access_token", "refresh_token", "id_token")


class TokenSeal:
    """AES-256-GCM on a session's tokens, keyed by HKDF of its id and bound to the row (its id hash) and column.

    Written by hand because it is three calls to `cryptography`: the key must come from the cookie, which
    no library's session store does, and the store must stay a plain table the console reads by hash.
    """

    PREFIX = "v1."

    def __init__(self, session_id: str):
        hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"enroll-console-session-tokens")
        self._aes = AESGCM(hkdf.derive(session_id.encode()))
        self.row = id_hash(session_id)

    def seal(self, tokens: Tokens) -> Tokens:
        return tokens.model_copy(update={name: self._seal(name, getattr(tokens, name)) for name in _TOKEN_COLUMNS})

    def open(self, session: StoredSession) -> StoredSession | None:
        """The row with its tokens readable; None if they cannot be opened with this session's id."""
        opened: dict[str, str | None] = {}
        for name in _TOKEN_COLUMNS:
            sealed = getattr(session, name)
            if sealed is None:
                opened[name] = None
                continue
            token = self._open(name, sealed)
            if token is None:
                return None
            opened[name] = token
        return session.model_copy(update=opened)

    @classmethod
    def in_clear(cls, session: StoredSession) -> bool:
        """Whether the row holds its tokens unsealed (written before they were sealed)."""
        tokens = [getattr(session, column) for column in _TOKEN_COLUMNS]
        return any(token and not token.startswith(cls.PREFIX) for token in tokens)

    def _seal(self, column: str, token: str | None) -> str | None:
        if token is None:
            return None
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aes.encrypt(nonce, token.encode(), self._bound_to(column))
        return self.PREFIX + base64.urlsafe_b64encode(sealed).decode()

    def _open(self, column: str, sealed: str) -> str | None:
        if not sealed.startswith(self.PREFIX):
            return None  # written in clear before tokens were sealed: not trusted, the person signs in again
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix(self.PREFIX))
            return self._aes.decrypt(raw[:12], raw[12:], self._bound_to(column)).decode()
        except (ValueError, InvalidTag):
            return None

    def _bound_to(self, column: str) -> bytes:
        """Associated data: a sealed token opens only in its own row and column."""
        return self.row + b":" + column.encode()


def actor_of(session: StoredSession) -> Actor:
    return Actor(session.subject, session.role, session.district)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _tokens(answer: TokenSet, identity: Identity) -> Tokens:
    return Tokens(
        access_token=answer.access_token,
        refresh_token=answer.refresh_token,
        id_token=answer.id_token,
        access_expires=dt.datetime.fromtimestamp(identity.exp, dt.UTC),
    )


async def begin(conn: HTTPConnection, identity: Identity, answer: TokenSet, policy: SessionPolicy) -> str:
    """A new session for the person the provider signed in; its id, for the cookie.

    Sessions that lapsed unused meanwhile are ended (and audited) here, so their tokens do not linger.
    """
    held = backends(conn)
    now = _now()
    for lapsed in await console_sessions.end_lapsed(held.pool, now):
        await audit(conn, actor_of(lapsed), "session_end", "lapsed", at_request=False, ended=lapsed.expires.isoformat())
    session_id = secrets.token_urlsafe(32)
    await console_sessions.start(
        held.pool,
        id_hash(session_id),
        subject=identity.sub,
        role=identity.role,
        district=identity.district,
        provider_sid=identity.sid,
        tokens=TokenSeal(session_id).seal(_tokens(answer, identity)),
        now=now,
        expires=min(now + policy.lifetime, now + policy.idle),
    )
    return session_id


async def current(conn: HTTPConnection, session_id: str, policy: SessionPolicy) -> StoredSession | str:
    """The live session behind the cookie, confirmed and refreshed as needed; else why there is none.

    The reason is one of console.auth's sign-in reasons. IdentityUnavailable when the provider
    cannot be asked: nothing is ended, and the request is not served.
    """
    held = backends(conn)
    seal, now = TokenSeal(session_id), _now()
    key = seal.row
    stored = await console_sessions.find(held.pool, key)
    if stored is None:
        return "required"
    if stored.ended_at is not None:
        return _SIGNIN_REASON_AFTER.get(stored.end_reason or "", "ended")
    session = seal.open(stored)
    if session is None:
        # Tokens left in clear are revoked (they were readable in the table); unopenable sealed ones are not tokens.
        await finish(conn, stored, "ended", revoke=TokenSeal.in_clear(stored))
        return "ended"
    if now >= session.created + policy.lifetime or now >= session.expires:
        await finish(conn, session, "expired" if now >= session.created + policy.lifetime else "idle")
        return "expired"
    if _due(session, policy, now):
        confirmed = await _confirm(conn, seal, policy, now)
        if isinstance(confirmed, str):
            return confirmed
        session = confirmed
    await console_sessions.touch(held.pool, key, min(session.created + policy.lifetime, now + policy.idle))
    return session


def _due(session: StoredSession, policy: SessionPolicy, now: dt.datetime) -> bool:
    return session.access_expires - now <= policy.refresh_margin or now - session.last_checked >= policy.recheck


async def _confirm(
    conn: HTTPConnection, seal: TokenSeal, policy: SessionPolicy, now: dt.datetime
) -> StoredSession | str:
    """Refresh or re-check the session at the provider, its row locked; the session as it now is, or "ended"."""
    held = backends(conn)
    key = seal.row
    async with held.pool.connection() as db, db.transaction():
        stored = await console_sessions.find(db, key, for_update=True)
        session = seal.open(stored) if stored is not None and stored.ended_at is None else None
        if session is None:
            return "ended"
        if not _due(session, policy, now):  # another request of the session confirmed it meanwhile
            return session
        refusal = await _ask_provider(held, db, session, seal, policy, now)
        if refusal is None:
            confirmed = await console_sessions.find(db, key)
            opened = seal.open(confirmed) if confirmed is not None else None
            if opened is None:  # written just now, in this transaction, with this seal
                raise RuntimeError("console session: the row just written does not open with its own seal")
            return opened
        await console_sessions.end(db, key, "ended", now)
    await audit(conn, actor_of(session), "session_end", "ended", reason=refusal)
    return "ended"


async def _ask_provider(
    held: Backends,
    db: AsyncConnection[Any],
    session: StoredSession,
    seal: TokenSeal,
    policy: SessionPolicy,
    now: dt.datetime,
) -> str | None:
    """Why the provider no longer stands behind the session, or None once it has confirmed (or refreshed) it."""
    client = held.identity
    try:
        if session.access_expires - now <= policy.refresh_margin:
            if session.refresh_token is None:
                return "access token expired and there is no refresh token"
            answer = await held.provider.refresh(session.refresh_token, client.client_id, client.client_secret)
            identity = await held.provider.verify_access_token(answer.access_token, CONSOLE_ROLES)
            if identity.sub != session.subject:
                return "refreshed token names another person"
            await console_sessions.renew(
                db, session.id_hash, identity.role, identity.district, seal.seal(_tokens(answer, identity)), now
            )
            return None
        assert session.access_token is not None  # a session that has not ended holds its tokens
        if not await held.provider.introspect(session.access_token, client.client_id, client.client_secret):
            return "not active at the provider"
        await console_sessions.confirmed(db, session.id_hash, now)
        return None
    except IdentityUnavailable:
        raise
    except IdentityError as refused:
        return refused.reason


async def finish(conn: HTTPConnection, session: StoredSession, reason: str, *, revoke: bool = True) -> None:
    """End the session here and (with `revoke`) its tokens at the provider; audited as `session_end` (or
    `sign_out`). A session replaced by a new sign-in in the same browser is not revoked: the new one may
    share its provider session, which revoking the old refresh token would end."""
    held = backends(conn)
    if not await console_sessions.end(held.pool, session.id_hash, reason, _now()):
        return  # already ended, by another request
    client = held.identity
    for token in (session.refresh_token, session.access_token) if revoke else ():
        if token is None:
            continue
        try:
            await held.provider.revoke(token, client.client_id, client.client_secret)
        except IdentityError as failed:  # the row has ended anyway; the provider's tokens lapse on their own
            log.warning("console token revocation failed", subject=session.subject, reason=failed.reason)
    action = "sign_out" if reason == "signed_out" else "session_end"
    await audit(conn, actor_of(session), action, reason if action == "session_end" else "ok")
