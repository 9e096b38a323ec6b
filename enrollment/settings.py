"""Deployment settings, read from the environment once per process.

Base URLs are the only thing that changes between the local stand-ins and the
real departments. Every variable is checked at start-up and every wrong one is
reported in the same error, so a deployment is fixed in one round, not one
restart per mistake; values never appear in it, since some are secrets.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from enrollment.china_time import china_date
from enrollment.crypto_profile import CryptoProfile
from enrollment.policy import DEFAULT_POLICIES_DIR
from enrollment.statuses import RoutingPhase
from enrollment.verifiers import VERIFIERS


def _env(variable: str, default: Any, rule: str | None = None) -> Any:
    """A setting read from `variable`; `rule` is what an error says when the value is not of the field's type."""
    return Field(default, validation_alias=variable, description=rule)


class SettingsError(ValueError):
    """Every wrong setting, one `VARIABLE: rule` line each, and never a value: it may be a secret."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("wrong settings in the environment:\n" + "\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """What a deployment configures. Immutable: tests derive variants with `model_copy(update=...)`."""

    # Empty variables count as unset, as compose's `${NAME:-}` passes them.
    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, env_ignore_empty=True, validate_default=True)

    # Set here (or in a test's model_copy) they win over the SDK's Temporal profile; see enrollment/client.py.
    temporal_address: str = _env("TEMPORAL_ADDRESS", "localhost:7233")
    temporal_namespace: str = _env("TEMPORAL_NAMESPACE", "default")
    # Where the stand-ins serve every department; a department URL left unset is its prefix here.
    standins_url: str = _env("ENROLL_STANDINS_URL", "http://127.0.0.1:8700")
    public_security_url: str = _env("ENROLL_PUBLIC_SECURITY_URL", "")
    social_insurance_url: str = _env("ENROLL_SOCIAL_INSURANCE_URL", "")
    natural_resources_url: str = _env("ENROLL_NATURAL_RESOURCES_URL", "")
    platform_url: str = _env("ENROLL_PLATFORM_URL", "")
    policies_dir: Path = _env("ENROLL_POLICIES_DIR", DEFAULT_POLICIES_DIR)
    # "phase_one", "phase_two", or "auto" to follow the cut-over date.
    routing_phase: Literal["auto", "phase_one", "phase_two"] = _env(
        "ENROLL_ROUTING_PHASE", "auto", "must be auto, phase_one or phase_two"
    )
    phase_two_from: dt.date = _env("ENROLL_PHASE_TWO_FROM", dt.date(2024, 9, 1), "must be a date, as 2024-09-01")
    http_timeout_seconds: PositiveFloat = _env(
        "ENROLL_HTTP_TIMEOUT_SECONDS", 10.0, "must be a positive number of seconds, as 10 or 2.5"
    )
    # None: the embedded PostgreSQL under .data/postgres. Secret: the URL may hold the password.
    database_url: SecretStr | None = _env("DATABASE_URL", None)
    # Secret for the keyed hash of identity numbers; None only with the embedded database.
    lookup_key: SecretStr | None = _env("ENROLL_LOOKUP_KEY", None)
    # Payload encryption keys `id:base64,...` and the one new payloads use (default: the first of the profile's
    # length; enrollment/codec.py).
    payload_keys: SecretStr | None = _env("ENROLL_PAYLOAD_KEYS", None)
    payload_key_id: str | None = _env("ENROLL_PAYLOAD_KEY_ID", None)
    # Payload cipher and look-up hash: standard (AES-256-GCM, HMAC-SHA256) or gm (SM4-GCM, HMAC-SM3; 国密).
    crypto_profile: CryptoProfile = _env(
        "ENROLL_CRYPTO_PROFILE", "standard", "must be standard (AES-256-GCM, HMAC-SHA256) or gm (SM4-GCM, HMAC-SM3)"
    )
    # The identity provider (OpenID Connect issuer) people sign in with, and which signs message proofs.
    # Product processes hold only its public keys, fetched from its discovery document.
    identity_issuer: str = _env("ENROLL_IDENTITY_ISSUER", "http://127.0.0.1:8900")
    # This process's own client secret at the provider (console, API, codec server; workers with Temporal tokens).
    identity_client_secret: SecretStr | None = _env("ENROLL_IDENTITY_CLIENT_SECRET", None)
    # This process's client at the provider whose own tokens Temporal's frontend accepts (enroll-workers,
    # enroll-api, enroll-console), its secret ENROLL_IDENTITY_CLIENT_SECRET; unset, no token is sent (a
    # frontend without authorization, or mTLS alone).
    temporal_client_id: str | None = _env("ENROLL_TEMPORAL_CLIENT_ID", None)
    # The review console's sessions: ended this long after sign-in, or after this long unused.
    console_session_hours: PositiveFloat = _env(
        "ENROLL_CONSOLE_SESSION_HOURS", 8.0, "must be a positive number of hours, as 8 or 0.5"
    )
    console_idle_minutes: PositiveFloat = _env(
        "ENROLL_CONSOLE_IDLE_MINUTES", 30.0, "must be a positive number of minutes, as 30"
    )
    # host:port of the workers' Prometheus endpoint; empty (the default) turns it off, so several
    # workers can share a machine. docker-compose and the demo set it.
    metrics_address: str = _env("ENROLL_METRICS_ADDRESS", "")
    # Calls per second each department accepts, across every worker (`hukou=20,property=10`);
    # a verifier not named is not limited. NoDecode: the variable is that text, not JSON.
    verifier_rate_limits: Annotated[dict[str, float], NoDecode] = _env("ENROLL_VERIFIER_RATE_LIMITS", {})
    # Cases a case worker keeps in memory between their steps; a case not kept is replayed from
    # its history at its next step. Bounds the workers' memory however many cases wait.
    max_cached_workflows: NonNegativeInt = _env("ENROLL_MAX_CACHED_WORKFLOWS", 1000, "must be a whole number")
    # Run the case workflow inside the SDK's sandbox. Off in production: with every module passed through,
    # the sandbox only traps non-deterministic calls, at about a sixth of the case worker's CPU. Determinism
    # is guarded instead where it is cheap: every in-process test worker runs sandboxed (tests/support), the
    # replay tests replay each release's histories, and ruff bans the clock, randomness and I/O in workflows/.
    workflow_sandbox: bool = _env("ENROLL_WORKFLOW_SANDBOX", False, "must be true or false")

    # The calling systems registered with the HTTP API, with their secrets (api/callers.py). Unset: generated
    # once under .data/secrets, which only a deployment without DATABASE_URL (a laptop, the demo) may do.
    api_clients_file: Path | None = _env("ENROLL_API_CLIENTS_FILE", None)
    # Requests per second each calling system may make to this API process (a burst of api_burst).
    api_requests_per_second: PositiveFloat = _env(
        "ENROLL_API_REQUESTS_PER_SECOND", 50.0, "must be a positive number of requests per second"
    )
    api_burst: PositiveInt = _env("ENROLL_API_BURST", 100, "must be a positive whole number")
    api_max_body_bytes: PositiveInt = _env("ENROLL_API_MAX_BODY_BYTES", 1 << 20, "must be a positive number of bytes")
    # Passwords of the services' own PostgreSQL roles, which `enroll setup` (run as the schema's owner)
    # creates or updates (store/roles.py); a service not given one is left as it is.
    worker_db_password: SecretStr | None = _env("ENROLL_WORKER_DB_PASSWORD", None)
    console_db_password: SecretStr | None = _env("ENROLL_CONSOLE_DB_PASSWORD", None)
    api_db_password: SecretStr | None = _env("ENROLL_API_DB_PASSWORD", None)
    auditor_db_password: SecretStr | None = _env("ENROLL_AUDITOR_DB_PASSWORD", None)
    # How long the audit trail keeps who did and who saw what: six months at least (store/audit.py).
    audit_retention_days: Annotated[int, Field(ge=183)] = _env(
        "ENROLL_AUDIT_RETENTION_DAYS", 183, "must be a whole number of days, at least 183"
    )
    # How the workers prove themselves to the departments and the platform (activities/outbound.py): none, a
    # client certificate (mtls: certificate and key files) or signed requests (signed: the id and secret the
    # gateway issued). ENROLL_OUTBOUND_CA, in any mode: the CA of the gateway's server certificate, trusted
    # besides the usual ones. Each set checked below, so an incomplete configuration refuses to start.
    outbound_auth: Literal["none", "mtls", "signed"] = _env(
        "ENROLL_OUTBOUND_AUTH", "none", "must be none, mtls or signed"
    )
    outbound_client_cert: Path | None = _env("ENROLL_OUTBOUND_CLIENT_CERT", None)
    outbound_client_key: Path | None = _env("ENROLL_OUTBOUND_CLIENT_KEY", None)
    outbound_ca: Path | None = _env("ENROLL_OUTBOUND_CA", None)
    outbound_client_id: str | None = _env("ENROLL_OUTBOUND_CLIENT_ID", None)
    outbound_signing_secret: SecretStr | None = _env("ENROLL_OUTBOUND_SIGNING_SECRET", None)

    @classmethod
    def from_env(cls) -> Settings:
        """The process's settings; a SettingsError (a ValueError) names every wrong variable with its rule."""
        try:
            return cls()
        except ValidationError as error:
            # `from None`: the ValidationError's text quotes the values.
            raise SettingsError([_problem(item) for item in error.errors(include_input=False)]) from None

    @field_validator("standins_url", "identity_issuer")
    @classmethod
    def _without_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("public_security_url", "social_insurance_url", "natural_resources_url", "platform_url")
    @classmethod
    def _standins_unless_set(cls, url: str, info: ValidationInfo) -> str:
        """`public_security_url` unset is `{standins_url}/public-security`, the stand-ins' prefix for it."""
        if url:
            return url
        prefix = str(info.field_name).removesuffix("_url").replace("_", "-")
        return f"{info.data['standins_url']}/{prefix}"

    @field_validator("outbound_client_cert", "outbound_client_key", "outbound_client_id", "outbound_signing_secret")
    @classmethod
    def _outbound_complete(cls, value: object, info: ValidationInfo) -> object:
        """What ENROLL_OUTBOUND_AUTH's mode needs is set. A field validator, not a model validator, so these are
        reported with every other wrong variable in the same error (an "after" model validator runs only
        once all fields are valid)."""
        mode = info.data.get("outbound_auth")
        if value is None and info.field_name in _OUTBOUND_NEEDS.get(str(mode), ()):
            raise ValueError(f"required when ENROLL_OUTBOUND_AUTH is {mode}")
        return value

    @field_validator("verifier_rate_limits", mode="before")
    @classmethod
    def _rate_limits_from_text(cls, spec: object) -> object:
        return parse_rate_limits(spec) if isinstance(spec, str) else spec

    def routing_phase_at(self, received_at: dt.datetime) -> RoutingPhase:
        """The phase a case received at this time runs in, for its whole life."""
        if self.routing_phase != "auto":
            return self.routing_phase
        return "phase_two" if china_date(received_at) >= self.phase_two_from else "phase_one"

    def reveal_database_url(self) -> str | None:
        """DATABASE_URL in clear, for the one call that opens the case store; None: the embedded database."""
        return self.database_url.get_secret_value() if self.database_url else None


# The settings each ENROLL_OUTBOUND_AUTH mode cannot do without.
_OUTBOUND_NEEDS = {
    "mtls": ("outbound_client_cert", "outbound_client_key"),
    "signed": ("outbound_client_id", "outbound_signing_secret"),
}


def _problem(error: ErrorDetails) -> str:
    """`VARIABLE: rule` for one refused variable: our validators' own message, else the field's declared rule."""
    variable = str(error["loc"][0])
    # A value left at its default (validate_default) is located by the field's name, not its variable.
    if variable in Settings.model_fields:
        variable = str(Settings.model_fields[variable].validation_alias)
    if error["type"] == "value_error":
        return f"{variable}: {error['ctx']['error']}"
    rules = {field.validation_alias: field.description for field in Settings.model_fields.values()}
    return f"{variable}: {rules.get(variable) or error['msg']}"


def parse_rate_limits(spec: str) -> dict[str, float]:
    """`hukou=20,property=10` as {verifier: calls per second}, refusing unknown verifiers and non-positive rates.

    The ValueError states the rule; Settings puts ENROLL_VERIFIER_RATE_LIMITS in front of it.
    """
    limits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        verifier, _, rate = item.partition("=")
        verifier = verifier.strip()
        if verifier not in VERIFIERS:
            raise ValueError(f"{verifier!r} is not a verifier; use {', '.join(VERIFIERS)}")
        try:
            limits[verifier] = float(rate)
        except ValueError:
            limits[verifier] = 0.0
        if not limits[verifier] > 0:
            raise ValueError(f"{verifier} needs a positive number of calls per second, as {verifier}=20")
    return limits
