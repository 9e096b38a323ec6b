"""Settings read from an environment the test states in full."""

from __future__ import annotations

import os

import pytest

from enrollment.settings import Settings


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings from exactly `env`: every ENROLL_*, TEMPORAL_* and DATABASE_URL of the outer environment removed."""
    for name in list(os.environ):
        if name.startswith(("ENROLL_", "TEMPORAL_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()
