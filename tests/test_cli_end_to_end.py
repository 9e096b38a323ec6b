"""The `enroll` command line and `python -m workers` against a real Temporal dev server.

This is how a newcomer and the ops team use the product: processes, not
fixtures, talking to the dev server (with its visibility store, so listing
cases by search attribute works) and to the stand-ins over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from api.callers import RegisteredClient
from enrollment.identity import LookupSecret
from enrollment.oidc import IdentityProvider
from tests.support.api import served_api
from tests.support.identity import approve_device, cli_token
from tests.support.keys import TEST_CODEC
from tests.support.people import reviewer_of, staff_of
from tests.support.policies import district_policy
from tests.support.processes import BIN, enroll, needs_temporal_cli
from tests.support.served import ServedApp
from tests.support.waiting import wait_until

pytestmark = needs_temporal_cli

OPS = "ops-1"
# The stand-in provider's line for the person at the command line (starter/signin.py).
SIGN_IN_PROMPT = re.compile(r"open (\S+) and enter the code (\S+)")


def signed_out(environment: dict[str, str], folder: Path) -> dict[str, str]:
    """The product's environment for a person with no session saved and no ENROLL_TOKEN."""
    return {
        **{name: value for name, value in environment.items() if name != "ENROLL_TOKEN"},
        "ENROLL_SESSION_FILE": str(folder / "session.json"),
    }


def case_status(environment: dict[str, str], application_id: str, token: str | None) -> dict[str, Any]:
    done = enroll(environment, "status", application_id, *(("--token", token) if token else ()))
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


async def status_reaches(
    environment: dict[str, str], application_id: str, status: str, token: str | None = None
) -> None:
    """Wait until `enroll status` (as whoever `token`, or else the saved session, is) shows the case at `status`."""
    await wait_until(
        lambda: case_status(environment, application_id, token),
        until=lambda shown: shown["status"] == status,
        timeout=30,
        interval=0.3,
        message=f"`enroll status` showing {application_id} at {status}",
        describe=lambda shown: shown["status"],
    )


async def synced(environment: dict[str, str], application_id: str, token: str) -> dict[str, Any]:
    """What `enroll status` shows once the case's result is at the platform."""
    return await wait_until(
        lambda: case_status(environment, application_id, token),
        until=lambda shown: shown["platform_synced"],
        timeout=30,
        interval=0.3,
        message=f"`enroll status` showing {application_id} synced to the platform",
    )


def review(environment: dict[str, str], application_id: str, *token: str, opinion: str = "同意") -> Any:
    """`enroll review ... --decision approve`, with `--token T` when a token is given."""
    args = ["review", application_id, *(("--token", token[0]) if token else ()), "--decision", "approve"]
    return enroll(environment, *args, "--opinion", opinion)


def altered(token: str) -> str:
    """The token with one character of its signature changed."""
    at = len(token) - 20
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


async def test_submit_review_and_see_the_result_at_the_platform(
    environment, worker, population, tmp_path, identity_provider
):
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
    app_id = target["application_id"]
    district = target["district_code"]
    other_district = "510105" if district != "510105" else "510104"
    issuer = identity_provider.base_url
    reviewer = await cli_token(issuer, reviewer_of(district))
    outsider = await cli_token(issuer, reviewer_of(other_district))
    staff = await cli_token(issuer, staff_of(district))
    ops = await cli_token(issuer, OPS)

    def target_awaiting_review() -> list[dict[str, Any]]:
        shown = enroll(environment, "awaiting-review", "--district", district, "--token", reviewer).stdout
        return [case for case in map(json.loads, shown.splitlines()) if case["application_id"] == app_id]

    listed = await wait_until(
        target_awaiting_review,
        timeout=30,
        interval=0.3,
        message=f"{app_id} listed by `enroll awaiting-review --district {district}`",
    )
    assert listed[0]["stage"] == target["stage"] and listed[0]["routing_phase"] == "phase_one"

    # A reviewer of another district reads nothing of this district's and is refused by the case.
    elsewhere = enroll(environment, "awaiting-review", "--district", district, "--token", outsider)
    assert elsewhere.returncode == 1 and f"a reviewer of {other_district} cannot read cases of {district}" in (
        elsewhere.stderr
    )
    peeked = enroll(environment, "status", app_id, "--token", outsider)
    assert peeked.returncode == 1 and f"cannot read cases of {district}" in peeked.stderr
    refused = review(environment, app_id, outsider)
    assert refused.returncode == 1, refused.stderr
    assert "refused: proof: signed for a person of another district than the case's" in refused.stderr

    wrong_role = review(environment, app_id, staff)
    assert wrong_role.returncode == 1 and "sign-in: a staff cannot do this (needs reviewer)" in wrong_role.stderr
    tampered = review(environment, app_id, altered(reviewer))
    assert tampered.returncode == 1 and "sign-in: token: signature does not verify" in tampered.stderr
    missing = review(signed_out(environment, tmp_path), app_id)
    assert missing.returncode == 1 and "sign-in: nobody is signed in; run `enroll login`" in missing.stderr

    approved = review(environment, app_id, reviewer, opinion="材料齐全，同意入学")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout) == {"application_id": app_id, "accepted": True, "status": "approved"}

    final = await synced(environment, app_id, reviewer)
    assert final["status"] == "approved" and final["review"]["opinion"] == "材料齐全，同意入学"
    assert final["review"]["reviewer_id"] == reviewer_of(district)
    decided = [entry for entry in final["timeline"] if entry["step"] == "reviewed:approve"]
    assert len(decided) == 1 and decided[0]["actor"] == f"reviewer:{reviewer_of(district)}" and decided[0]["credential"]
    refusals = [entry for entry in final["timeline"] if entry["step"] == "review_refused"]
    assert len(refusals) == 1 and refusals[0]["actor"] == f"unverified reviewer:{reviewer_of(other_district)}", (
        "only the outsider reached the case"
    )

    readable = enroll(environment, "status", app_id, "--token", reviewer, readable=True).stdout
    assert "status: approved" in readable and "STEP" in readable and "reviewed:approve" in readable
    table = enroll(environment, "cases", "--district", district, "--token", ops, readable=True).stdout
    assert table.splitlines()[0].split()[:2] == ["APPLICATION_ID", "STATUS"] and app_id in table

    not_for_reviewers = enroll(environment, "platform-record", app_id, "--token", reviewer)
    assert not_for_reviewers.returncode == 1 and "a reviewer cannot do this" in not_for_reviewers.stderr
    record = json.loads(enroll(environment, "platform-record", app_id, "--token", ops).stdout)
    assert [r["body"]["status"] for r in record["result"]] == ["approved"]

    late = review(environment, app_id, reviewer)
    assert late.returncode == 1 and "already finished" in late.stderr

    archived = await wait_until(
        lambda: json.loads(enroll(environment, "archive", app_id, "--token", reviewer).stdout),
        until=lambda shown: len(shown["archive"]) == 3,
        timeout=30,
        interval=0.3,
        message=f"three archive documents of {app_id}",
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
        for line in enroll(
            environment, "cases", "--district", district, "--status", "approved", "--token", reviewer
        ).stdout.splitlines()
    ]
    assert app_id in [row["application_id"] for row in listed]


async def test_a_reviewer_signs_in_with_enroll_login_and_reviews_without_a_token(
    environment, worker, population, tmp_path, identity_provider
):
    application = population.by_scenario("hukou_verified")[14]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
    assert enroll(environment, "submit", str(path)).returncode == 0
    district = application["district_code"]
    person = signed_out(environment, tmp_path)
    session = Path(person["ENROLL_SESSION_FILE"])

    login = subprocess.Popen(
        [str(BIN / "enroll"), "login", "--json"], env=person, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert login.stderr is not None
        prompt = None
        while prompt is None:
            line = login.stderr.readline()
            assert line, "`enroll login` ended without showing a code"
            prompt = SIGN_IN_PROMPT.search(line)
        page, user_code = prompt.groups()
        assert page.startswith(identity_provider.base_url)
        async with httpx.AsyncClient() as browser:
            approved = await approve_device(browser, identity_provider.base_url, user_code, reviewer_of(district))
        assert approved.status_code == 200, approved.text
        out, err = await asyncio.to_thread(login.communicate, timeout=60)
    finally:
        if login.poll() is None:
            login.kill()
            login.wait()
    assert login.returncode == 0, err
    assert json.loads(out) == {"signed_in": reviewer_of(district), "role": "reviewer", "district": district}
    assert session.stat().st_mode & 0o777 == 0o600, "the saved session is readable by its owner only"
    assert application["student"]["id_number"] not in session.read_text()

    await status_reaches(person, application["application_id"], "awaiting_review")
    approved_case = review(person, application["application_id"], opinion="同意入学")
    assert approved_case.returncode == 0, approved_case.stderr
    assert json.loads(approved_case.stdout)["accepted"] is True

    signed_off = enroll(person, "logout")
    assert signed_off.returncode == 0 and json.loads(signed_off.stdout) == {"signed_out": True}
    assert not session.exists()
    after = enroll(person, "status", application["application_id"])
    assert after.returncode == 1 and "enroll login" in after.stderr


def test_setup_is_idempotent(environment):
    first = enroll(environment, "setup")
    second = enroll(environment, "setup")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert json.loads(second.stdout)["migrations_applied"] == []
    assert "CaseStatus" in json.loads(second.stdout)["search_attributes"]


async def test_offline_registration_at_the_command_line_and_the_applicants_messages_through_the_api(
    environment, worker, population, dev_server, database_url, tmp_path, identity_provider
):
    """Staff register at the command line; the applicant's school choice and withdrawal come only through the
    front-door API (`enroll call ... --client platform`), which proves them as its own client."""
    offline = population.by_scenario("verification_failed_not_found")[2]
    choose = {**population.by_scenario("without_school_choice")[3], "channel": "platform"}
    withdraw = {**population.by_scenario("hukou_verified")[13], "channel": "platform"}
    path = tmp_path / f"{offline['application_id']}.json"
    path.write_text(json.dumps(offline, ensure_ascii=False), encoding="utf-8")
    assert enroll(environment, "submit", str(path)).returncode == 0
    ops = await cli_token(identity_provider.base_url, OPS)

    await status_reaches(environment, offline["application_id"], "awaiting_offline_registration", ops)
    staff = await cli_token(identity_provider.base_url, staff_of(offline["district_code"]))
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
    shown = case_status(environment, offline["application_id"], ops)
    step = next(entry for entry in shown["timeline"] if entry["step"] == "registered_offline")
    assert step["actor"] == f"staff:{staff_of(offline['district_code'])}" and step["credential"]

    # The platform's registered client, as the API and `enroll call` both read it. The worker hashes
    # identity numbers with the same key (tests/support/processes.py).
    secret = "platform-cli-secret"
    clients = tmp_path / "api_clients.json"
    clients.write_text(
        json.dumps({"clients": [{"client_id": "platform", "kind": "platform", "secret": secret}]}), encoding="utf-8"
    )
    platform = RegisteredClient(client_id="platform", kind="platform", secret=SecretStr(secret))
    lookup = LookupSecret(b"end-to-end-test-key", "standard")
    async with served_api(dev_server.address, database_url, [platform], lookup) as api:
        caller = {**environment, "ENROLL_API_CLIENTS_FILE": str(clients)}

        def call(path: str, body: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
            args = ["call", "POST", path, "--client", "platform", "--api-url", api.base_url]
            if body is not None:
                file = tmp_path / "body.json"
                file.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
                args += ["--body", str(file)]
            return enroll(caller, *args)

        for application in (choose, withdraw):
            handed_in = await asyncio.to_thread(call, "/v1/applications", application)
            assert handed_in.returncode == 0, handed_in.stdout + handed_in.stderr

        await status_reaches(environment, choose["application_id"], "awaiting_school_selection", ops)
        url = f"/v1/applications/{choose['application_id']}"
        bad = await asyncio.to_thread(call, f"{url}/school-choice", {"zone_id": "NO-SUCH", "school_id": "NO-SUCH-1"})
        assert bad.returncode == 1 and "HTTP 409" in bad.stderr
        assert json.loads(bad.stdout)["errors"][0].startswith("zone_id: NO-SUCH is not an enrollment zone")
        policy = district_policy(choose["district_code"])
        zone = next(z for z in policy.zones if any(choose["stage"] in s.stages for s in z.schools))
        school = next(s for s in zone.schools if choose["stage"] in s.stages)
        good = await asyncio.to_thread(
            call, f"{url}/school-choice", {"zone_id": zone.zone_id, "school_id": school.school_id}
        )
        assert good.returncode == 0, good.stdout + good.stderr
        assert json.loads(good.stdout) == {"accepted": True, "reason": None, "status": "awaiting_review"}
        selected = next(
            entry
            for entry in case_status(environment, choose["application_id"], ops)["timeline"]
            if entry["step"] == "school_selected"
        )
        assert selected["actor"] == "applicant via client:enroll-api" and selected["credential"]

        await status_reaches(environment, withdraw["application_id"], "awaiting_review", ops)
        url = f"/v1/applications/{withdraw['application_id']}"
        withdrawn = await asyncio.to_thread(call, f"{url}/withdrawal", {"reason": "搬家"})
        assert withdrawn.returncode == 0, withdrawn.stdout + withdrawn.stderr
        final = await synced(environment, withdraw["application_id"], ops)
        assert final["status"] == "withdrawn"
        late = await asyncio.to_thread(call, f"{url}/withdrawal", {"reason": "太晚了"})
        assert late.returncode == 1 and "HTTP 409" in late.stderr and "already finished" in late.stdout


async def test_the_server_stores_no_personal_data_in_clear_and_ops_can_decode_it(
    environment, worker, population, dev_server, tmp_path, identity_provider
):
    from temporalio.client import Client

    from codec_server.app import Caller, NotAuthorized, create_app
    from enrollment.oidc import IdentityError
    from stack import temporal_server

    application = population.by_scenario("non_hukou_verified")[5]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(application, ensure_ascii=False), encoding="utf-8")
    assert enroll(environment, "submit", str(path)).returncode == 0
    ops = await cli_token(identity_provider.base_url, OPS)
    await status_reaches(environment, application["application_id"], "awaiting_review", ops)

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

    # An ops person's access token and the codec server turn it back into clear text for the CLI (and the UI).
    async def ops_at_the_provider(token: str) -> Caller:
        """Who may decode: a person of the ops role signed in at the provider (on the served app's own loop)."""
        provider = IdentityProvider(identity_provider.base_url)
        try:
            identity = await provider.verify_access_token(token, ("ops",))
        except IdentityError as err:
            raise NotAuthorized(str(err)) from None
        finally:
            await provider.aclose()
        return Caller(sub=identity.sub, role=identity.role, jti=identity.jti, expires_at=identity.exp)

    async with ServedApp(create_app(TEST_CODEC, ops_at_the_provider, [])) as codec:

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

    found = re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', history_json)
    return "\n".join(base64.b64decode(data).decode("utf-8", "replace") for data in found)
