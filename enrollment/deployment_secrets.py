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
from enrollment.identity import LookupSecret
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
    """A key for each profile's cipher, so a laptop can switch ENROLL_CRYPTO_PROFILE and still read its cases."""
    return f"{new_key_spec('dev-1', 'standard')},{new_key_spec('dev-gm-1', 'gm')}"


def lookup_key(settings: Settings) -> LookupSecret:
    """Secret of the keyed hash that stands in for identity numbers in the case store, with the profile's hash."""
    secret = _configured_or_development(settings.lookup_key, "ENROLL_LOOKUP_KEY", settings, _random_secret)
    return LookupSecret(secret.encode(), settings.crypto_profile)


def payload_keys(settings: Settings) -> str:
    """`id:base64key,...` for payload encryption; ENROLL_PAYLOAD_KEY_ID (default: the profile's first) encrypts."""
    return _configured_or_development(settings.payload_keys, "ENROLL_PAYLOAD_KEYS", settings, _development_key_spec)


def identity_client_secret(settings: Settings, client_id: str) -> str:
    """This process's client secret at the identity provider (console, API, codec server).

    For the demo, one per client under .data/secrets, which the stand-in provider is started with.
    """
    if settings.identity_client_secret:
        return settings.identity_client_secret.get_secret_value()
    variable = "ENROLL_IDENTITY_CLIENT_SECRET"
    return _development_file(variable, f"identity_client_{client_id}", settings, _random_secret).read_text().strip()


def api_clients_file(settings: Settings, make: Callable[[], str]) -> Path:
    """The API's registered clients with their secrets; `make` writes a development list when none is configured."""
    if settings.api_clients_file is not None:
        return settings.api_clients_file
    return _development_file("ENROLL_API_CLIENTS_FILE", "api_clients.json", settings, make)
