"""Each department's agreed call rate holds in every second, whatever the backlog of cases."""

from __future__ import annotations

import json

import httpx
import psycopg

from enrollment.verification import CODE_FOUND, CODE_NAME_MISMATCH, CODE_NOT_FOUND
from enrollment.verifiers import VERIFIERS
from tests.support.processes import enroll, needs_temporal_cli, start_worker
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli

AGREED_RATE = 4


async def test_no_department_is_called_faster_than_agreed(environment, standins, population, tmp_path):
    limited = {
        **environment,
        "ENROLL_VERIFIER_RATE_LIMITS": ",".join(f"{verifier}={AGREED_RATE}" for verifier in VERIFIERS),
    }
    worker = start_worker(limited, tmp_path / "worker.log")
    # Hukou families (one hukou call each) and migrant families (a call per guardian to three departments).
    batch = population.by_scenario("hukou_verified")[:12] + population.by_scenario("non_hukou_verified")[:8]
    path = tmp_path / "batch.jsonl"
    path.write_text(
        "".join(json.dumps(application, ensure_ascii=False) + "\n" for application in batch), encoding="utf-8"
    )
    stats = lambda: httpx.get(f"{standins.base_url}/admin/stats").json()["stats"]  # noqa: E731
    try:
        assert enroll(limited, "submit", str(path)).returncode == 0
        await wait_until(
            lambda: verified_cases(environment["DATABASE_URL"]),
            until=lambda verified: verified == len(batch),
            timeout=90,
            interval=0.3,
            message=f"all {len(batch)} cases past verification",
        )
    finally:
        worker.terminate()
        worker.wait(60)
    calls = stats()
    for verifier in VERIFIERS:
        assert calls[verifier]["total"] > AGREED_RATE, f"{verifier}: the batch should press against the limit"
        assert set(calls[verifier]["by_code"]) <= {CODE_FOUND, CODE_NOT_FOUND, CODE_NAME_MISMATCH}, (
            "delayed, never failed"
        )
        assert calls[verifier]["peak_calls_per_second"] <= AGREED_RATE, (verifier, calls[verifier])


def verified_cases(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM cases WHERE status NOT IN ('submitted', 'verifying')").fetchone()
    assert row is not None, "a count has one row"
    count: int = row[0]
    return count
