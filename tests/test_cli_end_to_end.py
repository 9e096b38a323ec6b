"""The `enroll` command line and `python -m workers` against a real Temporal dev server.

This is how a newcomer and the ops team use the product: processes, not
fixtures, talking to the dev server (with its visibility store, so listing
cases by search attribute works) and to the stand-ins over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.keys import TEST_CODEC, TEST_TOKEN_SECRET
from tests.support.policies import district_policy
from tests.support.processes import case_status, enroll, issue_token, needs_temporal_cli
from tests.support.served import ServedApp
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli


async def status_reaches(environment: dict[str, str], application_id: str, status: str) -> None:
    """Wait until `enroll status` shows the case at `status`."""
    await wait_until(
        lambda: case_status(environment, application_id),
        until=lambda shown: shown["status"] == status,
        timeout=30,
        interval=0.3,
        message=f"`enroll status` showing {application_id} at {status}",
        describe=lambda shown: shown["status"],
    )


async def synced(environment: dict[str, str], application_id: str) -> dict[str, Any]:
    """What `enroll status` shows once the case's result is at the platform."""
    return await wait_until(
        lambda: case_status(environment, application_id),
        until=lambda shown: shown["platform_synced"],
        timeout=30,
        interval=0.3,
        message=f"`enroll status` showing {application_id} synced to the platform",
    )


async def test_submit_review_and_see_the_result_at_the_platform(environment, worker, population, tmp_path):
    chosen = [population.by_scenario("hukou_verified")[12], population.by_scenario("non_hukou_verified")[3]]
    broken = dict(
        chosen[0], application_id="SC2027-BROKEN1", student=dict(chosen[0]["student"], birth_date="2010-01-01")
    )
    applications = tmp_path / "applications.jsonl"
    applications.write_text(
        "\n".join(
            [json.dumps(a, ensure_ascii=False) for a in chosen]
            + [json.dumps(broken, ensure_ascii=False), "{not json", json.dumps(chosen[0], ensure_ascii=False)]
        )
        + "\n",
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

    def target_awaiting_review() -> list[dict[str, Any]]:
        shown = enroll(environment, "awaiting-review", "--district", district).stdout.splitlines()
        return [case for case in map(json.loads, shown) if case["application_id"] == target["application_id"]]

    listed = await wait_until(
        target_awaiting_review,
        timeout=30,
        interval=0.3,
        message=f"{target['application_id']} listed by `enroll awaiting-review --district {district}`",
    )
    assert listed[0]["stage"] == target["stage"] and listed[0]["routing_phase"] == "phase_one"

    other_district = "510105" if district != "510105" else "510104"
    outsider = issue_token(environment, "r-77", "reviewer", other_district)
    refused = enroll(
        environment,
        "review",
        target["application_id"],
        "--token",
        outsider,
        "--decision",
        "approve",
        "--opinion",
        "同意",
    )
    assert refused.returncode == 1 and f"refused: district_code: a reviewer of {other_district}" in refused.stderr

    staff = issue_token(environment, "s-01", "staff", district)
    wrong_role = enroll(
        environment, "review", target["application_id"], "--token", staff, "--decision", "approve", "--opinion", "同意"
    )
    assert wrong_role.returncode == 1 and "a staff token cannot do what needs a reviewer" in wrong_role.stderr
    reviewer = issue_token(environment, "r-01", "reviewer", district)
    forged = reviewer[:-3] + ("AAA" if not reviewer.endswith("AAA") else "BBB")
    tampered = enroll(
        environment, "review", target["application_id"], "--token", forged, "--decision", "approve", "--opinion", "同意"
    )
    assert tampered.returncode == 1 and "signature does not match" in tampered.stderr
    expired = issue_token(environment, "r-01", "reviewer", district, hours=-1)
    late_token = enroll(
        environment,
        "review",
        target["application_id"],
        "--token",
        expired,
        "--decision",
        "approve",
        "--opinion",
        "同意",
    )
    assert late_token.returncode == 1 and "token: expired" in late_token.stderr
    missing = enroll(environment, "review", target["application_id"], "--decision", "approve", "--opinion", "同意")
    assert missing.returncode == 1 and "a signed reviewer token is required" in missing.stderr

    approved = enroll(
        environment,
        "review",
        target["application_id"],
        "--token",
        reviewer,
        "--decision",
        "approve",
        "--opinion",
        "材料齐全，同意入学",
    )
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout) == {
        "application_id": target["application_id"],
        "accepted": True,
        "status": "approved",
    }

    final = await synced(environment, target["application_id"])
    assert final["status"] == "approved" and final["review"]["opinion"] == "材料齐全，同意入学"
    decided = [entry for entry in final["timeline"] if entry["step"] == "reviewed:approve"]
    assert len(decided) == 1 and decided[0]["actor"] == "reviewer:r-01" and decided[0]["credential"]
    refusals = [entry for entry in final["timeline"] if entry["step"] == "review_refused"]
    assert len(refusals) == 1 and refusals[0]["actor"] == "reviewer:r-77" and refusals[0]["credential"], (
        "only the outsider reached the case"
    )

    readable = enroll(environment, "status", target["application_id"], readable=True).stdout
    assert "status: approved" in readable and "STEP" in readable and "reviewed:approve" in readable
    table = enroll(environment, "cases", "--district", district, readable=True).stdout
    assert table.splitlines()[0].split()[:2] == ["APPLICATION_ID", "STATUS"] and target["application_id"] in table

    record = json.loads(enroll(environment, "platform-record", target["application_id"]).stdout)
    assert [r["body"]["status"] for r in record["result"]] == ["approved"]

    late = enroll(environment, "withdraw", target["application_id"], "--reason", "太晚了")
    assert late.returncode == 1 and "already finished" in late.stderr

    archived = await wait_until(
        lambda: json.loads(enroll(environment, "archive", target["application_id"]).stdout),
        until=lambda shown: len(shown["archive"]) == 3,
        timeout=30,
        interval=0.3,
        message=f"three archive documents of {target['application_id']}",
        describe=lambda shown: [document["kind"] for document in shown["archive"]],
    )
    assert archived["case"]["status"] == "approved" and target["student"]["id_number"] not in json.dumps(
        archived, ensure_ascii=False
    )
    assert [(e["step"], e["credential"]) for e in archived["events"]] == [
        (e["step"], e["credential"]) for e in final["timeline"]
    ]
    listed = [
        json.loads(line)
        for line in enroll(environment, "cases", "--district", district, "--status", "approved").stdout.splitlines()
    ]
    assert target["application_id"] in [row["application_id"] for row in listed]


def test_setup_is_idempotent(environment):
    first = enroll(environment, "setup")
    second = enroll(environment, "setup")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(second.stdout)["migrations_applied"] == []
    assert "CaseStatus" in json.loads(second.stdout)["search_attributes"]


async def test_offline_registration_school_selection_and_withdrawal_from_the_command_line(
    environment, worker, population
):
    offline = population.by_scenario("verification_failed_not_found")[2]
    choose = population.by_scenario("without_school_choice")[3]
    withdraw = population.by_scenario("hukou_verified")[13]
    for application in (offline, choose, withdraw):
        path = Path(environment.get("TMPDIR", "/tmp")) / f"{application['application_id']}.json"
        path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
        assert enroll(environment, "submit", str(path)).returncode == 0

    await status_reaches(environment, offline["application_id"], "awaiting_offline_registration")
    staff = issue_token(environment, "s-01", "staff", offline["district_code"])
    registered = enroll(
        environment,
        "register-offline",
        offline["application_id"],
        "--token",
        staff,
        "--material",
        "居民户口簿",
        "--material",
        "居住证明",
    )
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["status"] == "awaiting_review", "the receipt carries the case's new status"

    await status_reaches(environment, choose["application_id"], "awaiting_school_selection")
    bad = enroll(environment, "select-school", choose["application_id"], "--zone", "NO-SUCH", "--school", "NO-SUCH-1")
    assert bad.returncode == 1 and "refused: zone_id: NO-SUCH is not an enrollment zone" in bad.stderr
    policy = district_policy(choose["district_code"])
    zone = next(z for z in policy.zones if any(choose["stage"] in s.stages for s in z.schools))
    school = next(s for s in zone.schools if choose["stage"] in s.stages)
    good = enroll(
        environment, "select-school", choose["application_id"], "--zone", zone.zone_id, "--school", school.school_id
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {
        "application_id": choose["application_id"],
        "accepted": True,
        "status": "awaiting_review",
    }

    await status_reaches(environment, withdraw["application_id"], "awaiting_review")
    withdrawn = enroll(environment, "withdraw", withdraw["application_id"], "--reason", "搬家")
    assert withdrawn.returncode == 0, withdrawn.stderr
    final = await synced(environment, withdraw["application_id"])
    assert final["status"] == "withdrawn"


async def test_the_server_stores_no_personal_data_in_clear_and_ops_can_decode_it(
    environment, worker, population, dev_server, tmp_path
):
    from temporalio.client import Client

    from codec_server.app import create_app
    from stack import temporal_server

    application = population.by_scenario("non_hukou_verified")[5]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
    assert enroll(environment, "submit", str(path)).returncode == 0
    await status_reaches(environment, application["application_id"], "awaiting_review")

    # What the server holds, read without the key: every byte of the history.
    plain = await Client.connect(dev_server.address)
    history = await plain.get_workflow_handle(f"case-{application['application_id']}").fetch_history()
    stored = b"".join(event.SerializeToString() for event in history.events)
    people = [application["student"], *application["guardians"]]
    secrets_in_clear = (
        [p["id_number"] for p in people] + [p["name"] for p in people] + [g["phone"] for g in application["guardians"]]
    )
    assert len(stored) > 5000
    for value in secrets_in_clear:
        assert value.encode() not in stored, "the Temporal server holds personal data in clear"

    # An ops token and the codec server turn it back into clear text for the CLI (and the UI).
    ops = issue_token(environment, "ops-01", "ops")
    async with ServedApp(create_app(TEST_CODEC, TEST_TOKEN_SECRET, [])) as codec:
        import subprocess

        def show(*auth: str) -> subprocess.CompletedProcess[str]:
            """The case's history as `temporal workflow show` prints it through the codec server."""
            command = [str(temporal_server.find_cli()), "workflow", "show", "--address", dev_server.address]
            command += ["--workflow-id", f"case-{application['application_id']}", "--codec-endpoint", codec.base_url]
            return subprocess.run([*command, *auth, "--output", "json"], capture_output=True, text=True, timeout=60)

        shown = show("--codec-auth", f"Bearer {ops}")
        refused = show()
    assert shown.returncode == 0, shown.stderr
    assert application["student"]["name"] in payload_text(shown.stdout)
    assert application["student"]["name"] not in payload_text(refused.stdout), "no token, no clear text"


def payload_text(history_json: str) -> str:
    """Every payload's data in a `temporal workflow show --output json` history, as text."""
    import base64
    import re

    found = re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', history_json)
    return "\n".join(base64.b64decode(data).decode("utf-8", "replace") for data in found)
