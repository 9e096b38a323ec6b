"""The people who sign in and the programs (clients) that ask for tokens, loaded from JSON files.

Passwords and client secrets are kept as scrypt hashes (`scrypt$n$r$p$salt$hash`, base64 parts): the
files ship with the repository, so they must not hold anything that signs in by itself being read.
The demo's passwords are documented in docs/identity.md; they exist for the stand-in only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

DEFAULT_ACCOUNTS = Path(__file__).with_name("accounts.json")
DEFAULT_CLIENTS = Path(__file__).with_name("clients.json")

Role = Literal["reviewer", "staff", "supervisor", "ops", "auditor"]
ClientRole = Literal["platform", "service"]
DISTRICT_ROLES = frozenset({"reviewer", "staff", "supervisor"})

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
Grant = Literal[
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]

# scrypt's interactive-login cost (RFC 7914 §2): ~50 ms and 16 MiB per check.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SUB = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_DISTRICT = re.compile(r"^[0-9]{6}$")
# One entry of a Temporal token's `permissions` claim, as the frontend's default claim mapper reads it:
# `<namespace>:<role>` (`temporal-system` for the whole cluster).
_TEMPORAL_PERMISSION = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}:(read|write|worker|admin)$")


def _check_temporal_permission(permission: str) -> str:
    if not _TEMPORAL_PERMISSION.match(permission):
        raise ValueError("must be <namespace>:<read|write|worker|admin>")
    return permission


TemporalPermission = Annotated[str, AfterValidator(_check_temporal_permission)]


def hash_secret(secret: str) -> str:
    """A password or client secret as it is stored: `scrypt$n$r$p$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, stored: str) -> bool:
    scheme, n, r, p, salt, expected = stored.split("$")
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(digest, _unb64(expected))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_hash(stored: str) -> str:
    if len(stored.split("$")) != 6 or not stored.startswith("scrypt$"):
        raise ValueError("must be an scrypt hash (scrypt$n$r$p$salt$hash)")
    return stored


ScryptHash = Annotated[str, AfterValidator(_check_hash)]


# Checked against when the account does not exist, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


class Account(BaseModel):
    """A person: reviewers and service-point staff belong to one district; ops and auditors to none."""

    sub: str
    role: Role
    district: str | None = None
    password_hash: ScryptHash = Field(repr=False)
    disabled: bool = False

    @model_validator(mode="after")
    def _shape(self) -> Account:
        if not _SUB.match(self.sub):
            raise ValueError("sub: 2-64 lower-case letters, digits and ._-")
        if self.role in DISTRICT_ROLES and not (self.district and _DISTRICT.match(self.district)):
            raise ValueError(f"district: a {self.role} belongs to one district (6-digit code)")
        if self.role not in DISTRICT_ROLES and self.district is not None:
            raise ValueError(f"district: must be null for {self.role}")
        return self


class TemporalAccess(BaseModel):
    """What this client's tokens for Temporal's frontend may do there (their `permissions` claim).

    `own`: the client's own token (client_credentials with `audience=temporal`), for a service that runs or
    starts cases. `people`: a person's, by role, when they sign in through this client or exchange its token;
    a role not named here gets no Temporal token at all.
    """

    model_config = ConfigDict(extra="forbid")

    own: list[TemporalPermission] = Field(default_factory=list)
    people: dict[Role, list[TemporalPermission]] = Field(default_factory=dict)


class Client(BaseModel):
    """A program that asks for tokens: confidential when it has a secret, public (a command line) when not."""

    client_id: str
    secret_hash: ScryptHash | None = Field(default=None, repr=False)
    grants: list[Grant]
    redirect_uris: list[str] = Field(default_factory=list)
    post_logout_redirect_uris: list[str] = Field(default_factory=list)
    # The role of the client's own access tokens (client_credentials): who it is when it acts for itself.
    role: ClientRole | None = None
    # Whose people this client may act for, and in which actions: it may exchange the access tokens a client
    # named here issued to people for proofs of those actions only (RFC 8693 delegation; the proof names this
    # client as `act`). The API acts for ops people signed in on the command line, to re-verify cases.
    acts_for: dict[str, list[str]] = Field(default_factory=dict)
    temporal: TemporalAccess = Field(default_factory=TemporalAccess)
    # Whom the access tokens people get through this client are for: the product's services, or Temporal's
    # frontend (the Temporal UI signs people in for itself alone).
    audience: Literal["enrollment", "temporal"] = "enrollment"
    # PKCE on the authorization code flow. Only a confidential client that checks the ID token's nonce may go
    # without: the Temporal UI server sends no code_challenge, and its secret and nonce bind the code to it.
    require_pkce: bool = True

    def may_act_for(self, client_id: str, action: str) -> bool:
        return action in self.acts_for.get(client_id, ())

    @model_validator(mode="after")
    def _shape(self) -> Client:
        if GRANT_CLIENT_CREDENTIALS in self.grants and (
            self.secret_hash is None or (self.role is None and not self.temporal.own)
        ):
            raise ValueError("client_credentials needs a secret, and a role or temporal.own")
        if GRANT_AUTHORIZATION_CODE in self.grants and not self.redirect_uris:
            raise ValueError("authorization_code needs redirect_uris")
        if self.acts_for and not self.confidential:
            raise ValueError("acts_for needs a secret: a public client cannot act for anyone")
        if not self.require_pkce and not self.confidential:
            raise ValueError("require_pkce: a public client must use PKCE")
        if self.temporal.own and GRANT_CLIENT_CREDENTIALS not in self.grants:
            raise ValueError("temporal.own needs client_credentials")
        if self.audience == "temporal" and not self.temporal.people:
            raise ValueError("audience temporal needs temporal.people: whose Temporal tokens it may issue")
        return self

    @property
    def confidential(self) -> bool:
        return self.secret_hash is not None

    @property
    def subject(self) -> str:
        """The `sub` of the client's own tokens."""
        return f"client:{self.client_id}"


class _AccountsFile(BaseModel):
    note: str = ""
    accounts: list[Account]


class _ClientsFile(BaseModel):
    note: str = ""
    clients: list[Client]


class Directory:
    """Accounts and clients in memory; disabling an account lasts until the process ends (the files stay as
    they are). A disabled account signs in no more; `Grants.end_sessions_of` ends what it had."""

    def __init__(self, accounts: list[Account], clients: list[Client]):
        self.accounts = {account.sub: account for account in accounts}
        self.clients = {client.client_id: client for client in clients}
        # client id -> SHA-256 of the secret scrypt last accepted: a client authenticates on every token
        # exchange, and 50 ms of scrypt per message would make the stand-in the bottleneck of a load test.
        self._verified: dict[str, bytes] = {}

    @classmethod
    def load(cls, accounts_file: Path = DEFAULT_ACCOUNTS, clients_file: Path = DEFAULT_CLIENTS) -> Directory:
        accounts = _AccountsFile.model_validate(json.loads(Path(accounts_file).read_text("utf-8")))
        clients = _ClientsFile.model_validate(json.loads(Path(clients_file).read_text("utf-8")))
        return cls(accounts.accounts, clients.clients)

    def authenticate(self, sub: str, password: str) -> Account | None:
        """The account if the password is its own, else None (also for an unknown or disabled account).

        Slow on purpose (scrypt): run it off the event loop.
        """
        account = self.accounts.get(sub)
        matches = verify_secret(password, account.password_hash if account else _DUMMY_HASH)
        return account if account and matches and not account.disabled else None

    def authenticate_client(self, client_id: str, secret: str | None) -> Client | None:
        """The client if it exists and the secret is right (a public client sends none), else None."""
        client = self.clients.get(client_id)
        if client is None or client.secret_hash is None:
            return client if client is not None and secret is None else None
        if secret is None:
            return None
        fingerprint = hashlib.sha256(secret.encode()).digest()
        if hmac.compare_digest(self._verified.get(client_id, b""), fingerprint):
            return client
        if not verify_secret(secret, client.secret_hash):
            return None
        self._verified[client_id] = fingerprint
        return client
