"""Deployment settings: the routing phase from a cut-over date or an explicit setting."""

import datetime as dt

import pytest

from enrollment.settings import Settings


def settings(monkeypatch, **env) -> Settings:
    for name in ("ENROLL_ROUTING_PHASE", "ENROLL_PHASE_TWO_FROM", "ENROLL_VERIFIER_RATE_LIMITS", "ENROLL_MAX_CACHED_WORKFLOWS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_the_phase_follows_the_cut_over_date_in_china_time(monkeypatch):
    configured = settings(monkeypatch, ENROLL_PHASE_TWO_FROM="2027-09-01")
    # Midnight in Sichuan is 16:00 UTC the day before.
    assert configured.routing_phase_at(dt.datetime(2027, 8, 31, 15, 59, tzinfo=dt.timezone.utc)) == "phase_one"
    assert configured.routing_phase_at(dt.datetime(2027, 8, 31, 16, 0, tzinfo=dt.timezone.utc)) == "phase_two"


def test_the_scheme_cut_over_is_the_default(monkeypatch):
    configured = settings(monkeypatch)
    assert configured.routing_phase_at(dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)) == "phase_one"
    assert configured.routing_phase_at(dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)) == "phase_two"


def test_an_explicit_phase_overrides_the_date(monkeypatch):
    configured = settings(monkeypatch, ENROLL_ROUTING_PHASE="phase_one")
    assert configured.routing_phase_at(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)) == "phase_one"


def test_a_wrong_phase_setting_is_refused_by_name(monkeypatch):
    with pytest.raises(ValueError, match="ENROLL_ROUTING_PHASE: must be auto, phase_one or phase_two"):
        settings(monkeypatch, ENROLL_ROUTING_PHASE="phase_3")


def test_verifier_rate_limits_are_read_per_verifier(monkeypatch):
    configured = settings(monkeypatch, ENROLL_VERIFIER_RATE_LIMITS="hukou=20, property=2.5")
    assert configured.verifier_rate_limits == {"hukou": 20.0, "property": 2.5}
    assert settings(monkeypatch, ENROLL_VERIFIER_RATE_LIMITS="").verifier_rate_limits == {}


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("hukuo=20", "'hukuo' is not a verifier"),
        ("hukou=fast", "hukou needs a positive number of calls per second"),
        ("property=0", "property needs a positive number of calls per second"),
        ("social_insurance", "social_insurance needs a positive number of calls per second"),
    ],
)
def test_a_wrong_rate_limit_is_refused_by_name(monkeypatch, spec, rule):
    with pytest.raises(ValueError, match=f"ENROLL_VERIFIER_RATE_LIMITS: {rule}"):
        settings(monkeypatch, ENROLL_VERIFIER_RATE_LIMITS=spec)


def test_the_worker_cache_size_is_a_whole_number(monkeypatch):
    assert settings(monkeypatch).max_cached_workflows == 1000
    assert settings(monkeypatch, ENROLL_MAX_CACHED_WORKFLOWS="250").max_cached_workflows == 250
    with pytest.raises(ValueError, match="ENROLL_MAX_CACHED_WORKFLOWS: must be a whole number"):
        settings(monkeypatch, ENROLL_MAX_CACHED_WORKFLOWS="-5")
