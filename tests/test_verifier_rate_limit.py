"""A department's agreed call rate holds in every second, whatever the backlog of cases."""

from __future__ import annotations

import json

import httpx

from tests.processes import enroll, eventually, needs_temporal_cli, start_worker

pytestmark = needs_temporal_cli

AGREED_HUKOU_RATE = 4


def test_the_hukou_registry_is_never_called_faster_than_agreed(environment, standins, population, tmp_path):
    limited = {**environment, "ENROLL_VERIFIER_RATE_LIMITS": f"hukou={AGREED_HUKOU_RATE}"}
    worker = start_worker(limited, tmp_path / "worker.log")
    try:
        batch = population.by_scenario("hukou_verified")[:16]
        path = tmp_path / "batch.jsonl"
        path.write_text("".join(json.dumps(application, ensure_ascii=False) + "\n" for application in batch), encoding="utf-8")
        assert enroll(limited, "submit", str(path)).returncode == 0
        stats = lambda: httpx.get(f"{standins.base_url}/admin/stats").json()["stats"]  # noqa: E731
        eventually(lambda: stats()["hukou"]["total"] >= len(batch), timeout=60)
    finally:
        worker.terminate()
        worker.wait(60)
    hukou = stats()["hukou"]
    assert hukou["total"] == len(batch), "one call per case: the limit delays calls, it does not fail them"
    assert hukou["by_code"] == {"0000": len(batch)}
    assert hukou["peak_calls_per_second"] <= AGREED_HUKOU_RATE, hukou
