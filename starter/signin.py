"""Who is at the command line: a person signed in at the identity provider, never someone a flag names.

`enroll login` signs in with the device authorization grant (the command
prints a code; the person enters it on the provider's page in a browser) and
keeps the tokens in a file only its owner can read; `enroll logout` revokes
them. A token from the provider can also be given with `--token` or
`ENROLL_TOKEN` (scripts). Every command that reads or acts on a case asks for
the identity here first, and what it reads goes into the audit trail.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from enrollment.oidc import Identity, IdentityError, IdentityProvider
from enrollment.provers import PersonProver
from enrollment.settings import Settings
from starter.cases import CaseActionError

CLI_CLIENT = "enroll-cli"
ALL_ROLES = ("reviewer", "staff", "supervisor", "ops", "auditor")


def session_file() -> Path:
    configured = os.environ.get("ENROLL_SESSION_FILE")
    return Path(configured) if configured else Path.home() / ".config" / "enroll" / "session.json"


class SavedSession(BaseModel):
    issuer: str
    access_token: str
    refresh_token: str | None = None


@dataclass(frozen=True)
class SignedIn:
    identity: Identity
    access_token: str
    provider: IdentityProvider

    @property
    def prove(self) -> PersonProver:
        return PersonProver(self.provider, self.access_token, CLI_CLIENT)


def _save(session: SavedSession) -> None:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created readable by its owner only, before anything is written into it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(session.model_dump_json())


def _saved(issuer: str) -> SavedSession | None:
    try:
        session = SavedSession.model_validate_json(session_file().read_text())
    except (OSError, ValueError):
        return None
    return session if session.issuer == issuer else None


async def login(settings: Settings) -> Identity:
    provider = IdentityProvider(settings.identity_issuer)
    flow = await provider.start_device_flow(CLI_CLIENT)
    print(f"To sign in, open {flow.verification_uri} and enter the code {flow.user_code}", file=sys.stderr)
    tokens = await provider.poll_device_flow(flow, CLI_CLIENT)
    identity = await provider.verify_access_token(tokens.access_token, ALL_ROLES)
    _save(SavedSession(issuer=provider.issuer, access_token=tokens.access_token, refresh_token=tokens.refresh_token))
    return identity


async def logout(settings: Settings) -> bool:
    """Revoke the saved tokens at the provider and forget them; False when nobody was signed in."""
    saved = _saved(settings.identity_issuer)
    if saved is None:
        return False
    provider = IdentityProvider(settings.identity_issuer)
    for token in filter(None, (saved.refresh_token, saved.access_token)):
        await provider.revoke(token, CLI_CLIENT, None)
    session_file().unlink(missing_ok=True)
    return True


async def signed_in(token: str | None, settings: Settings, roles: tuple[str, ...]) -> SignedIn:
    """The signed-in person, if of one of the roles; CaseActionError saying how to sign in otherwise."""
    provider = IdentityProvider(settings.identity_issuer)
    saved = None if token else _saved(provider.issuer)
    token = token or os.environ.get("ENROLL_TOKEN") or (saved.access_token if saved else None)
    if not token:
        raise CaseActionError("sign-in: nobody is signed in; run `enroll login` (or give --token)")
    try:
        identity = await provider.verify_access_token(token, ALL_ROLES)
    except IdentityError as err:
        if saved is None or saved.refresh_token is None:
            raise CaseActionError(f"sign-in: {err}; run `enroll login` again") from None
        refreshed = await provider.refresh(saved.refresh_token, CLI_CLIENT, None)
        _save(saved.model_copy(update=refreshed.model_dump(include={"access_token", "refresh_token"})))
        token = refreshed.access_token
        identity = await provider.verify_access_token(token, ALL_ROLES)
    if identity.role not in roles:
        raise CaseActionError(f"sign-in: a {identity.role} cannot do this (needs {' or '.join(roles)})")
    return SignedIn(identity, token, provider)
