"""The `enroll` command line and `python -m workers` against a real Temporal dev server.

This is how a newcomer and the ops team use the product: processes, not
fixtures, talking to the dev server (with its visibility store, so listing
cases by search attribute works) and to the stand-ins over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.processes import TEST_TOKEN_SECRET, case_status, enroll, issue_token, eventually, needs_temporal_cli

pytestmark = needs_temporal_cli


def test_submit_review_and_see_the_result_at_the_platform(environment, worker, population, tmp_path):
    chosen = [population.by_scenario("hukou_verified")[12], population.by_scenario("non_hukou_verified")[3]]
    broken = dict(chosen[0], application_id="SC2027-BROKEN1", student=dict(chosen[0]["student"], birth_date="2010-01-01"))
    applications = tmp_path / "applications.jsonl"
    applications.write_text(
        "\n".join([json.dumps(a, ensure_ascii=False) for a in chosen] + [json.dumps(broken, ensure_ascii=False), "{not json", json.dumps(chosen[0], ensure_ascii=False)]) + "\n",
        encoding="utf-8",
    )

    submitted = enroll(environment, "submit", str(applications))
    lines = [json.loads(line) for line in submitted.stdout.splitlines()]
    assert submitted.returncode == 1, "some lines were refused"
    assert [line["result"] for line in lines] == ["started", "started", "invalid", "invalid", "duplicate"]
    assert lines[2]["errors"] == ["student.id_number: birth date in the identity number does not match birth_date"]
    assert lines[3]["errors"][0].startswith("line: not valid JSON")
    assert lines[0]["workflow_id"] == f"case-{chosen[0]['application_id']}"

    target = chosen[0]
    district = target["district_code"]
    listed = eventually(
        lambda: [json.loads(l) for l in enroll(environment, "awaiting-review", "--district", district).stdout.splitlines()]
        and [c for c in (json.loads(l) for l in enroll(environment, "awaiting-review", "--district", district).stdout.splitlines()) if c["application_id"] == target["application_id"]]
    )
    assert listed[0]["stage"] == target["stage"] and listed[0]["routing_phase"] == "phase_one"

    other_district = "510105" if district != "510105" else "510104"
    outsider = issue_token(environment, "r-77", "reviewer", other_district)
    refused = enroll(environment, "review", target["application_id"], "--token", outsider, "--decision", "approve", "--opinion", "同意")
    assert refused.returncode == 1 and f"refused: district_code: a reviewer of {other_district}" in refused.stderr

    staff = issue_token(environment, "s-01", "staff", district)
    wrong_role = enroll(environment, "review", target["application_id"], "--token", staff, "--decision", "approve", "--opinion", "同意")
    assert wrong_role.returncode == 1 and "a staff token cannot do what needs a reviewer" in wrong_role.stderr
    reviewer = issue_token(environment, "r-01", "reviewer", district)
    forged = reviewer[:-3] + ("AAA" if not reviewer.endswith("AAA") else "BBB")
    tampered = enroll(environment, "review", target["application_id"], "--token", forged, "--decision", "approve", "--opinion", "同意")
    assert tampered.returncode == 1 and "signature does not match" in tampered.stderr
    expired = issue_token(environment, "r-01", "reviewer", district, hours=-1)
    late_token = enroll(environment, "review", target["application_id"], "--token", expired, "--decision", "approve", "--opinion", "同意")
    assert late_token.returncode == 1 and "token: expired" in late_token.stderr
    missing = enroll(environment, "review", target["application_id"], "--decision", "approve", "--opinion", "同意")
    assert missing.returncode == 1 and "a signed reviewer token is required" in missing.stderr

    approved = enroll(environment, "review", target["application_id"], "--token", reviewer, "--decision", "approve", "--opinion", "材料齐全，同意入学")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout) == {"application_id": target["application_id"], "accepted": True, "status": "approved"}

    final = eventually(lambda: (s := case_status(environment, target["application_id"]))["platform_synced"] and s)
    assert final["status"] == "approved" and final["review"]["opinion"] == "材料齐全，同意入学"
    decided = [entry for entry in final["timeline"] if entry["step"] == "reviewed:approve"]
    assert len(decided) == 1 and decided[0]["actor"] == "reviewer:r-01" and decided[0]["credential"]
    refusals = [entry for entry in final["timeline"] if entry["step"] == "review_refused"]
    assert len(refusals) == 1 and refusals[0]["actor"] == "reviewer:r-77" and refusals[0]["credential"], "only the outsider reached the case"

    readable = enroll(environment, "status", target["application_id"], readable=True).stdout
    assert "status: approved" in readable and "STEP" in readable and "reviewed:approve" in readable
    table = enroll(environment, "cases", "--district", district, readable=True).stdout
    assert table.splitlines()[0].split()[:2] == ["APPLICATION_ID", "STATUS"] and target["application_id"] in table

    record = json.loads(enroll(environment, "platform-record", target["application_id"]).stdout)
    assert [r["body"]["status"] for r in record["result"]] == ["approved"]

    late = enroll(environment, "withdraw", target["application_id"], "--reason", "太晚了")
    assert late.returncode == 1 and "already finished" in late.stderr

    archived = eventually(lambda: len((a := json.loads(enroll(environment, "archive", target["application_id"]).stdout))["archive"]) == 3 and a)
    assert archived["case"]["status"] == "approved" and target["student"]["id_number"] not in json.dumps(archived, ensure_ascii=False)
    assert [(e["step"], e["credential"]) for e in archived["events"]] == [(e["step"], e["credential"]) for e in final["timeline"]]
    listed = [json.loads(line) for line in enroll(environment, "cases", "--district", district, "--status", "approved").stdout.splitlines()]
    assert target["application_id"] in [row["application_id"] for row in listed]


def test_setup_is_idempotent(environment):
    first = enroll(environment, "setup")
    second = enroll(environment, "setup")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(second.stdout)["migrations_applied"] == []
    assert "CaseStatus" in json.loads(second.stdout)["search_attributes"]


def test_offline_registration_school_selection_and_withdrawal_from_the_command_line(environment, worker, population):
    offline = population.by_scenario("verification_failed_not_found")[2]
    choose = population.by_scenario("without_school_choice")[3]
    withdraw = population.by_scenario("hukou_verified")[13]
    for application in (offline, choose, withdraw):
        path = Path(environment.get("TMPDIR", "/tmp")) / f"{application['application_id']}.json"
        path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
        assert enroll(environment, "submit", str(path)).returncode == 0

    eventually(lambda: case_status(environment, offline["application_id"])["status"] == "awaiting_offline_registration")
    staff = issue_token(environment, "s-01", "staff", offline["district_code"])
    registered = enroll(environment, "register-offline", offline["application_id"], "--token", staff, "--material", "居民户口簿", "--material", "居住证明")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["status"] == "awaiting_review", "the receipt carries the case's new status"

    eventually(lambda: case_status(environment, choose["application_id"])["status"] == "awaiting_school_selection")
    bad = enroll(environment, "select-school", choose["application_id"], "--zone", "NO-SUCH", "--school", "NO-SUCH-1")
    assert bad.returncode == 1 and "refused: zone_id: NO-SUCH is not an enrollment zone" in bad.stderr
    from enrollment.policy import policy_book

    policy = policy_book().district(choose["district_code"])
    zone = next(z for z in policy.zones if any(choose["stage"] in s.stages for s in z.schools))
    school = next(s for s in zone.schools if choose["stage"] in s.stages)
    good = enroll(environment, "select-school", choose["application_id"], "--zone", zone.zone_id, "--school", school.school_id)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {"application_id": choose["application_id"], "accepted": True, "status": "awaiting_review"}

    eventually(lambda: case_status(environment, withdraw["application_id"])["status"] == "awaiting_review")
    withdrawn = enroll(environment, "withdraw", withdraw["application_id"], "--reason", "搬家")
    assert withdrawn.returncode == 0, withdrawn.stderr
    final = eventually(lambda: (s := case_status(environment, withdraw["application_id"]))["platform_synced"] and s)
    assert final["status"] == "withdrawn"


async def test_the_server_stores_no_personal_data_in_clear_and_ops_can_decode_it(environment, worker, population, dev_server, tmp_path):
    from temporalio.client import Client

    from codec_server.app import create_app
    from stack import temporal_server
    from tests.processes import TEST_CONVERTER, ServedApp

    application = population.by_scenario("non_hukou_verified")[5]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
    assert enroll(environment, "submit", str(path)).returncode == 0
    eventually(lambda: case_status(environment, application["application_id"])["status"] == "awaiting_review")

    # What the server holds, read without the key: every byte of the history.
    plain = await Client.connect(dev_server.address)
    history = await plain.get_workflow_handle(f"case-{application['application_id']}").fetch_history()
    stored = b"".join(event.SerializeToString() for event in history.events)
    people = [application["student"], *application["guardians"]]
    secrets_in_clear = [p["id_number"] for p in people] + [p["name"] for p in people] + [g["phone"] for g in application["guardians"]]
    assert len(stored) > 5000
    for value in secrets_in_clear:
        assert value.encode() not in stored, "the Temporal server holds personal data in clear"

    # An ops token and the codec server turn it back into clear text for the CLI (and the UI).
    ops = issue_token(environment, "ops-01", "ops")
    with ServedApp(create_app(TEST_CONVERTER.payload_codec, TEST_TOKEN_SECRET, [])) as codec:
        import subprocess

        shown = subprocess.run(
            [str(temporal_server.find_cli()), "workflow", "show", "--address", dev_server.address,
             "--workflow-id", f"case-{application['application_id']}", "--codec-endpoint", codec.base_url,
             "--codec-auth", f"Bearer {ops}", "--output", "json"],
            capture_output=True, text=True, timeout=60,
        )
        refused = subprocess.run(
            [str(temporal_server.find_cli()), "workflow", "show", "--address", dev_server.address,
             "--workflow-id", f"case-{application['application_id']}", "--codec-endpoint", codec.base_url, "--output", "json"],
            capture_output=True, text=True, timeout=60,
        )
    assert shown.returncode == 0, shown.stderr
    assert application["student"]["name"] in payload_text(shown.stdout)
    assert application["student"]["name"] not in payload_text(refused.stdout), "no token, no clear text"


def payload_text(history_json: str) -> str:
    """Every payload's data in a `temporal workflow show --output json` history, as text."""
    import base64
    import re

    found = re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', history_json)
    return "\n".join(base64.b64decode(data).decode("utf-8", "replace") for data in found)
