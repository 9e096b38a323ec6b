"""Secrets a deployment configures, with development stand-ins for a laptop.

A real deployment (one with DATABASE_URL) must configure every secret: values
made up on the spot could never decrypt or match what was written before.
Without DATABASE_URL (the demo, the tests' own processes) a value is generated
once and kept in the git-ignored `.data` folder, so restarts keep working.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from enrollment.codec import new_key_spec
from enrollment.settings import Settings

DEV_SECRETS = Path(__file__).resolve().parent.parent / ".data" / "secrets"


def _configured_or_development(value: str | None, variable: str, settings: Settings, make) -> str:
    if value:
        return value
    if settings.database_url:
        raise ValueError(f"{variable}: must be set in a deployment with DATABASE_URL")
    path = DEV_SECRETS / variable.lower()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def lookup_key(settings: Settings) -> bytes:
    """Secret of the keyed hash that stands in for identity numbers in the case store."""
    return _configured_or_development(settings.lookup_key, "ENROLL_LOOKUP_KEY", settings, lambda: secrets.token_hex(32)).encode()


def payload_keys(settings: Settings) -> str:
    """`id:base64key,...` for payload encryption; the first is active unless ENROLL_PAYLOAD_KEY_ID says otherwise."""
    return _configured_or_development(settings.payload_keys, "ENROLL_PAYLOAD_KEYS", settings, lambda: new_key_spec("dev-1"))


def token_secret(settings: Settings) -> bytes:
    """Secret that signs the identity tokens of reviewers, service-point staff and ops."""
    return _configured_or_development(settings.token_secret, "ENROLL_TOKEN_SECRET", settings, lambda: secrets.token_hex(32)).encode()
