"""Deployment settings, read from the environment once per process.

Base URLs are the only thing that changes between the local stand-ins and the
real departments.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from enrollment.china_time import china_date
from enrollment.policy import DEFAULT_POLICIES_DIR, VERIFIERS


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _count(name: str, default: str) -> int:
    value = _env(name, default)
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"{name}: must be a whole number, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    temporal_address: str
    temporal_namespace: str
    public_security_url: str
    social_insurance_url: str
    natural_resources_url: str
    platform_url: str
    policies_dir: Path
    # "phase_one", "phase_two", or "auto" to follow the cut-over date.
    routing_phase: str
    phase_two_from: dt.date
    http_timeout_seconds: float
    # None: the embedded PostgreSQL under .data/postgres.
    database_url: str | None
    # Secret for the keyed hash of identity numbers; None only with the embedded database.
    lookup_key: str | None
    # Payload encryption keys `id:base64,...` and the one new payloads use (default: the first).
    payload_keys: str | None
    payload_key_id: str | None
    # Signs identity tokens (enrollment/tokens.py).
    token_secret: str | None
    # host:port of the workers' Prometheus endpoint; empty (the default) turns it off, so several
    # workers can share a machine. docker-compose and the demo set it.
    metrics_address: str
    # Calls per second each department accepts, across every worker (`hukou=20,property=10`);
    # a verifier not named is not limited.
    verifier_rate_limits: dict[str, float]
    # Cases a case worker keeps in memory between their steps; a case not kept is replayed from
    # its history at its next step. Bounds the workers' memory however many cases wait.
    max_cached_workflows: int

    @classmethod
    def from_env(cls) -> Settings:
        standins = _env("ENROLL_STANDINS_URL", "http://127.0.0.1:8700").rstrip("/")
        phase = _env("ENROLL_ROUTING_PHASE", "auto")
        if phase not in ("auto", "phase_one", "phase_two"):
            raise ValueError(f"ENROLL_ROUTING_PHASE: must be auto, phase_one or phase_two, not {phase!r}")
        return cls(
            temporal_address=_env("TEMPORAL_ADDRESS", "localhost:7233"),
            temporal_namespace=_env("TEMPORAL_NAMESPACE", "default"),
            public_security_url=_env("ENROLL_PUBLIC_SECURITY_URL", f"{standins}/public-security"),
            social_insurance_url=_env("ENROLL_SOCIAL_INSURANCE_URL", f"{standins}/social-insurance"),
            natural_resources_url=_env("ENROLL_NATURAL_RESOURCES_URL", f"{standins}/natural-resources"),
            platform_url=_env("ENROLL_PLATFORM_URL", f"{standins}/platform"),
            policies_dir=Path(_env("ENROLL_POLICIES_DIR", str(DEFAULT_POLICIES_DIR))),
            routing_phase=phase,
            phase_two_from=dt.date.fromisoformat(_env("ENROLL_PHASE_TWO_FROM", "2024-09-01")),
            http_timeout_seconds=float(_env("ENROLL_HTTP_TIMEOUT_SECONDS", "10")),
            database_url=os.environ.get("DATABASE_URL") or None,
            lookup_key=os.environ.get("ENROLL_LOOKUP_KEY") or None,
            payload_keys=os.environ.get("ENROLL_PAYLOAD_KEYS") or None,
            payload_key_id=os.environ.get("ENROLL_PAYLOAD_KEY_ID") or None,
            token_secret=os.environ.get("ENROLL_TOKEN_SECRET") or None,
            metrics_address=os.environ.get("ENROLL_METRICS_ADDRESS", ""),
            verifier_rate_limits=parse_rate_limits(os.environ.get("ENROLL_VERIFIER_RATE_LIMITS", "")),
            max_cached_workflows=_count("ENROLL_MAX_CACHED_WORKFLOWS", "1000"),
        )

    def routing_phase_at(self, received_at: dt.datetime) -> str:
        """The phase a case received at this time runs in, for its whole life."""
        if self.routing_phase != "auto":
            return self.routing_phase
        return "phase_two" if china_date(received_at) >= self.phase_two_from else "phase_one"


def parse_rate_limits(spec: str) -> dict[str, float]:
    """`hukou=20,property=10` as {verifier: calls per second}, refusing unknown verifiers and non-positive rates."""
    limits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        verifier, _, rate = item.partition("=")
        verifier = verifier.strip()
        if verifier not in VERIFIERS:
            raise ValueError(f"ENROLL_VERIFIER_RATE_LIMITS: {verifier!r} is not a verifier; use {', '.join(VERIFIERS)}")
        try:
            limits[verifier] = float(rate)
        except ValueError:
            limits[verifier] = 0.0
        if not limits[verifier] > 0:
            raise ValueError(f"ENROLL_VERIFIER_RATE_LIMITS: {verifier} needs a positive number of calls per second, as {verifier}=20")
    return limits
