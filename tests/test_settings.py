"""Deployment settings: the routing phase, every wrong variable at once, secrets kept hidden, and the
Temporal connection from the SDK's environment configuration."""

import datetime as dt

import pytest
from pydantic import ValidationError

from enrollment.client import connect_options
from enrollment.settings import SettingsError
from tests.support.environment import settings_from as settings


def test_the_phase_follows_the_cut_over_date_in_china_time(monkeypatch):
    configured = settings(monkeypatch, ENROLL_PHASE_TWO_FROM="2027-09-01")
    # Midnight in Sichuan is 16:00 UTC the day before.
    assert configured.routing_phase_at(dt.datetime(2027, 8, 31, 15, 59, tzinfo=dt.UTC)) == "phase_one"
    assert configured.routing_phase_at(dt.datetime(2027, 8, 31, 16, 0, tzinfo=dt.UTC)) == "phase_two"


def test_the_scheme_cut_over_is_the_default(monkeypatch):
    configured = settings(monkeypatch)
    assert configured.routing_phase_at(dt.datetime(2024, 6, 1, tzinfo=dt.UTC)) == "phase_one"
    assert configured.routing_phase_at(dt.datetime(2026, 11, 25, tzinfo=dt.UTC)) == "phase_two"


def test_an_explicit_phase_overrides_the_date(monkeypatch):
    configured = settings(monkeypatch, ENROLL_ROUTING_PHASE="phase_one")
    assert configured.routing_phase_at(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)) == "phase_one"


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


def test_every_wrong_variable_is_reported_at_once_without_its_value(monkeypatch):
    secret_looking = {
        "ENROLL_ROUTING_PHASE": "phase-3-s3cret",
        "ENROLL_PHASE_TWO_FROM": "s3cret-date",
        "ENROLL_HTTP_TIMEOUT_SECONDS": "s3cret-seconds",
        "ENROLL_MAX_CACHED_WORKFLOWS": "-5",
        "ENROLL_VERIFIER_RATE_LIMITS": "hukou=s3cret",
    }
    with pytest.raises(SettingsError) as refused:
        settings(monkeypatch, DATABASE_URL="postgresql://u:s3cret@db/enrollment", **secret_looking)
    assert isinstance(refused.value, ValueError)
    assert refused.value.problems == [
        "ENROLL_ROUTING_PHASE: must be auto, phase_one or phase_two",
        "ENROLL_PHASE_TWO_FROM: must be a date, as 2024-09-01",
        "ENROLL_HTTP_TIMEOUT_SECONDS: must be a positive number of seconds, as 10 or 2.5",
        "ENROLL_VERIFIER_RATE_LIMITS: hukou needs a positive number of calls per second, as hukou=20",
        "ENROLL_MAX_CACHED_WORKFLOWS: must be a whole number",
    ]
    # The ValidationError behind it quotes the values: it must not be printed with the traceback.
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert "s3cret" not in str(refused.value) and "-5" not in str(refused.value)


def test_department_urls_default_to_the_standins(monkeypatch):
    configured = settings(
        monkeypatch, ENROLL_STANDINS_URL="http://standins:8700/", ENROLL_PLATFORM_URL="https://platform.example"
    )
    assert configured.public_security_url == "http://standins:8700/public-security"
    assert configured.social_insurance_url == "http://standins:8700/social-insurance"
    assert configured.natural_resources_url == "http://standins:8700/natural-resources"
    assert configured.platform_url == "https://platform.example"
    assert settings(monkeypatch).platform_url == "http://127.0.0.1:8700/platform"


def test_secrets_never_show_and_empty_ones_are_unset(monkeypatch):
    configured = settings(
        monkeypatch,
        DATABASE_URL="postgresql://u:pw-123@db/enrollment",
        ENROLL_LOOKUP_KEY="lookup-123",
        ENROLL_IDENTITY_CLIENT_SECRET="",
    )
    assert "pw-123" not in repr(configured) and "lookup-123" not in str(configured)
    assert configured.reveal_database_url() == "postgresql://u:pw-123@db/enrollment"
    assert configured.lookup_key is not None and configured.lookup_key.get_secret_value() == "lookup-123"
    assert configured.identity_client_secret is None and configured.payload_keys is None
    assert settings(monkeypatch).reveal_database_url() is None


def test_settings_are_frozen_and_varied_by_copy(monkeypatch):
    configured = settings(monkeypatch)
    with pytest.raises(ValidationError):
        # setattr: the assignment mypy already refuses, to see the model refuse it at run time as well.
        setattr(configured, "routing_phase", "phase_two")  # noqa: B010
    assert configured.model_copy(update={"routing_phase": "phase_two"}).routing_phase == "phase_two"
    assert configured.routing_phase == "auto"


TEMPORAL_CONFIG = """
[profile.default]
address = "temporal.internal:7233"
namespace = "enrollment"

[profile.cloud]
address = "enrollment.a1b2c.tmprl.cloud:7233"
namespace = "enrollment.a1b2c"
api_key = "cloud-api-key"

[profile.cloud.tls]
disabled = true
"""


@pytest.fixture
def temporal_config(tmp_path) -> str:
    path = tmp_path / "temporal.toml"
    path.write_text(TEMPORAL_CONFIG)
    return str(path)


def test_the_temporal_connection_comes_from_the_profile_named_in_the_environment(monkeypatch, temporal_config):
    configured = settings(monkeypatch, TEMPORAL_CONFIG_FILE=temporal_config, TEMPORAL_PROFILE="cloud")
    assert connect_options(configured) == {
        "target_host": "enrollment.a1b2c.tmprl.cloud:7233",
        "namespace": "enrollment.a1b2c",
        "api_key": "cloud-api-key",
        "tls": False,
    }
    default_profile = settings(monkeypatch, TEMPORAL_CONFIG_FILE=temporal_config)
    assert connect_options(default_profile) == {"target_host": "temporal.internal:7233", "namespace": "enrollment"}


def test_temporal_settings_that_are_set_win_over_the_profile(monkeypatch, temporal_config):
    configured = settings(monkeypatch, TEMPORAL_CONFIG_FILE=temporal_config, TEMPORAL_ADDRESS="temporal:7233")
    assert connect_options(configured) == {"target_host": "temporal:7233", "namespace": "enrollment"}
    dev_server = configured.model_copy(update={"temporal_address": "127.0.0.1:7299", "temporal_namespace": "tests"})
    assert connect_options(dev_server) == {"target_host": "127.0.0.1:7299", "namespace": "tests"}


def test_without_a_profile_temporal_is_the_local_default(monkeypatch, tmp_path):
    configured = settings(monkeypatch, TEMPORAL_CONFIG_FILE=str(tmp_path / "absent.toml"))
    assert connect_options(configured) == {"target_host": "localhost:7233", "namespace": "default"}
    with_api_key = settings(monkeypatch, TEMPORAL_CONFIG_FILE=str(tmp_path / "absent.toml"), TEMPORAL_API_KEY="key-1")
    assert connect_options(with_api_key) == {
        "target_host": "localhost:7233",
        "namespace": "default",
        "api_key": "key-1",
        "tls": True,
    }
