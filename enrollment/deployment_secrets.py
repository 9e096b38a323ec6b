"""Secrets a deployment configures, with development stand-ins for a laptop.

A real deployment (one with DATABASE_URL) must configure every secret: values
made up on the spot could never decrypt or match what was written before.
Without DATABASE_URL (the demo, the tests' own processes) a value is generated
once and kept in the git-ignored `.data` folder, so restarts keep working.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from enrollment.codec import new_key_spec
from enrollment.settings import Settings

DEV_SECRETS = Path(__file__).resolve().parent.parent / ".data" / "secrets"


def _configured_or_development(
    value: SecretStr | None, variable: str, settings: Settings, make: Callable[[], str]
) -> str:
    if value:
        return value.get_secret_value()
    return _development_file(variable, variable.lower(), settings, make).read_text().strip()


def _development_file(variable: str, name: str, settings: Settings, make: Callable[[], str]) -> Path:
    """The file under .data/secrets, written once by `make`; refused in a deployment with DATABASE_URL."""
    if settings.database_url:
        raise ValueError(f"{variable}: must be set in a deployment with DATABASE_URL")
    path = DEV_SECRETS / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path


def _random_secret() -> str:
    return secrets.token_hex(32)


def _development_key_spec() -> str:
    return new_key_spec("dev-1")


def lookup_key(settings: Settings) -> bytes:
    """Secret of the keyed hash that stands in for identity numbers in the case store."""
    return _configured_or_development(settings.lookup_key, "ENROLL_LOOKUP_KEY", settings, _random_secret).encode()


def payload_keys(settings: Settings) -> str:
    """`id:base64key,...` for payload encryption; the first is active unless ENROLL_PAYLOAD_KEY_ID says otherwise."""
    return _configured_or_development(settings.payload_keys, "ENROLL_PAYLOAD_KEYS", settings, _development_key_spec)


def token_secret(settings: Settings) -> bytes:
    """Secret that signs the identity tokens of reviewers, service-point staff and ops."""
    return _configured_or_development(settings.token_secret, "ENROLL_TOKEN_SECRET", settings, _random_secret).encode()


def api_clients_file(settings: Settings, make: Callable[[], str]) -> Path:
    """The API's registered clients with their secrets; `make` writes a development list when none is configured."""
    if settings.api_clients_file is not None:
        return settings.api_clients_file
    return _development_file("ENROLL_API_CLIENTS_FILE", "api_clients.json", settings, make)
