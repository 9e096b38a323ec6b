"""Attacks on a case by someone who can reach the Temporal server, each refused, recorded, and harmless.

On the Temporal dev server with the product's workers (tests/support/outsider.py), against a case
waiting for review. Each attempt leaves the case as it was, is written into its timeline (or, for a
payload without the key, refused by the codec before the case sees it: tests/test_payload_refusal.py),
and the case still takes the genuine review afterwards. Elsewhere in the suite: proofs expired or
issued in the future (tests/test_proofs.py), the codec server's /encode (tests/test_codec.py), the
result lookup's enumeration (tests/test_console.py), truncates by each database role
(tests/test_database_roles.py).
"""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from enrollment import search_attributes as sa
from enrollment.application import Application
from enrollment.case import CASE_TASK_QUEUE, CaseInput, CaseView, OfflineRegistration, Receipt, Review
from enrollment.oidc import IdentityError
from stack.temporal_server import DevServer, find_cli
from standins.identity_provider.runner import RunningIdentityProvider
from standins.population import Population
from starter.cli import build_parser
from starter.hand_in import fingerprint
from tests.support.outsider import Product, case_awaiting_review, timeline
from tests.support.people import People, reviewer_of, staff_of
from tests.support.processes import needs_temporal_cli
from tests.support.waiting import wait_until
from workflows.enrollment_case import EnrollmentCase

pytestmark = needs_temporal_cli


def approval(district: str, reviewer: str | None = None) -> Review:
    return Review(
        reviewer_id=reviewer or reviewer_of(district), district_code=district, decision="approve", opinion="同意入学"
    )


async def review(handle: WorkflowHandle[Any, Any], message: Review) -> Receipt:
    """Send the review as it is, proof or not, with the product's client (and so its payload key)."""
    receipt: Receipt = await handle.execute_update("review", message, result_type=Receipt)
    return receipt


async def refused_and_recorded(handle: WorkflowHandle[Any, Any], before: CaseView, receipt: Any, why: str) -> CaseView:
    """The receipt refuses with `why`, the case is where it was, and its timeline has exactly one new refusal."""
    assert not receipt.accepted and why in (receipt.reason or ""), receipt
    after: CaseView = await handle.query(EnrollmentCase.status)
    assert after.status == before.status and after.reviews == before.reviews
    new = timeline(after)[len(before.timeline) :]
    assert len(new) == 1 and new[0][0].endswith("_refused") and why in (new[0][2] or ""), new
    return after


async def test_the_outsiders_raw_temporal_signal_leaves_the_case_as_it_was(
    product: Product, population: Population, people: People, dev_server: DevServer
):
    """The attack the trust work started from: `temporal workflow signal --name review` with no token, no key."""
    handle = await case_awaiting_review(product, population, index=11)
    before: CaseView = await handle.query(EnrollmentCase.status)
    forged = approval(before.district_code, reviewer="x").model_dump_json()
    cli = str(find_cli())
    signal = [cli, "workflow", "signal", "--address", dev_server.address, "--workflow-id", handle.id]
    subprocess.run([*signal, "--name", "review", "--input", forged], check=True, capture_output=True, timeout=30)

    recorded = await wait_until(
        lambda: handle.query(EnrollmentCase.status),
        until=lambda view: any(entry.step == "signal_refused" for entry in view.timeline),
        timeout=20,
        interval=0.1,
        message="the raw signal's refusal in the timeline",
    )
    assert recorded.status == "awaiting_review" and recorded.reviews == before.reviews
    [entry] = [entry for entry in recorded.timeline if entry.step == "signal_refused"]
    assert entry.actor == "unknown sender" and "only as proven updates" in (entry.detail or "")

    receipt = await people.send(handle, approval(before.district_code))
    assert receipt.accepted and receipt.status in ("approved", "awaiting_review"), receipt


async def test_messages_with_the_key_but_no_valid_proof_are_refused_and_recorded(
    product: Product, population: Population, people: People, identity_provider: RunningIdentityProvider
):
    """An insider with the payload key (a leaked worker configuration) still cannot decide a case."""
    handle = await case_awaiting_review(product, population, index=12)
    other_case = await case_awaiting_review(product, population, index=13)
    view: CaseView = await handle.query(EnrollmentCase.status)
    district = view.district_code
    other_district = next(code for code in ("510104", "510105") if code != district)
    genuine = approval(district)

    # No proof at all, sent with the product's own client (and so its payload key).
    receipt = await review(handle, genuine)
    view = await refused_and_recorded(handle, view, receipt, "proof: missing")

    # A proof signed by a key the provider does not publish (forged).
    proven = await people.prove(handle, genuine)
    header, body, signature = proven.proof.split(".")
    forged = proven.model_copy(update={"proof": f"{header}.{body}.{signature[::-1]}"})
    view = await refused_and_recorded(handle, view, await review(handle, forged), "proof")

    # A genuine proof for another message: the decision changed after signing (altered).
    altered = proven.model_copy(update={"decision": "reject"})
    receipt = await review(handle, altered)
    view = await refused_and_recorded(handle, view, receipt, "proof")

    # A genuine proof for the same review of another case (replayed onto this one).
    elsewhere = await people.prove(other_case, genuine)
    receipt = await review(handle, elsewhere)
    view = await refused_and_recorded(handle, view, receipt, "proof")

    # A reviewer of another district, signed in and proving their own message.
    outsider = approval(other_district)
    receipt = await people.send(handle, outsider.model_copy(update={"district_code": other_district}))
    view = await refused_and_recorded(handle, view, receipt, "proof")

    # Another role: service-point staff cannot review (their proof is for the action they ask, but the case
    # allows `review` from reviewers only).
    staff_review = genuine.model_copy(update={"reviewer_id": staff_of(district)})
    staff_proof = await people.proof_as(staff_of(district), handle, staff_review)
    receipt = await review(handle, staff_review.model_copy(update={"proof": staff_proof}))
    view = await refused_and_recorded(handle, view, receipt, "proof")

    # A person whose access was revoked at the provider gets no proof at all, with the token they hold.
    revoked = "r-510104-2"
    await people.access_token(revoked)
    admin = {"authorization": f"Bearer {identity_provider.admin_secret}"}
    account = f"{identity_provider.base_url}/admin/accounts/{revoked}"
    httpx.patch(account, json={"disabled": True}, headers=admin).raise_for_status()
    try:
        with pytest.raises(IdentityError, match="subject_token"):
            await people.proof_as(revoked, handle, genuine)
    finally:  # the provider is shared by the whole session: give the account back for the tests after,
        # and forget its revoked tokens, so the next test that sends as it signs in again
        httpx.patch(account, json={"disabled": False}, headers=admin).raise_for_status()
        people.forget(revoked)

    # The genuine review, then the same proven message again (replayed).
    taken = await people.prove(handle, genuine)
    receipt = await review(handle, taken)
    assert receipt.accepted, receipt
    again = await review(handle, taken)
    assert not again.accepted and "proof" in (again.reason or ""), again
    final: CaseView = await handle.query(EnrollmentCase.status)
    assert [r.reviewer_id for r in final.reviews] == [reviewer_of(district)]
    refusals = [entry for entry in final.timeline if entry.step == "review_refused"]
    assert len(refusals) == 7 and all(entry.credential is None or entry.actor for entry in refusals)


async def test_a_staff_proof_cannot_register_a_case_of_another_district(
    product: Product, population: Population, people: People
):
    handle = await case_awaiting_review(product, population, index=14)
    view: CaseView = await handle.query(EnrollmentCase.status)
    other = next(code for code in ("510104", "510105") if code != view.district_code)
    registration = OfflineRegistration(staff_id=staff_of(other), district_code=other, materials=["户口簿"])
    receipt = await people.send(handle, registration)
    await refused_and_recorded(handle, view, receipt, "proof")


def test_the_ui_refuses_every_write_action(dev_server: DevServer):
    """Terminate, signal, reset and friends through the UI server are refused, with or without its CSRF token."""
    with httpx.Client(base_url=dev_server.ui_url, timeout=10) as browser:
        settings = browser.get("/api/v1/settings").json()
        assert settings["DisableWriteActions"] is True
        browser.get("/namespaces/default/workflows")
        csrf = browser.cookies.get("_csrf") or ""
        for action in ("terminate", "signal/review", "reset", "cancel", "update/review"):
            answer = browser.post(
                f"/api/v1/namespaces/default/workflows/case-x/{action}", json={}, headers={"X-CSRF-TOKEN": csrf}
            )
            assert answer.status_code in (400, 403, 405), (action, answer.status_code)
            if csrf:
                assert answer.status_code == 405, (action, answer.text)


def test_a_mistyped_command_never_repeats_a_token_or_an_identity_number(capsys):
    """A stray word in a command (a token pasted after the wrong flag) is not echoed into a terminal log."""
    token, number = "eyJhbGciOiJFUzI1NiJ9.secret.part", "11010519491231002X"
    for argv in (["status", "SC2027-000001", "--tokn", token], ["audit", "case", "SC2027-000001", number]):
        with pytest.raises(SystemExit) as exit_code:
            build_parser().parse_args(argv)
        assert exit_code.value.code == 2
        error = capsys.readouterr().err
        assert "unrecognized arguments" in error and token not in error and number not in error, error


async def test_a_start_that_misdescribes_its_case_is_corrected_by_the_case(product: Product, population: Population):
    """Someone who may start cases sets search attributes that hide the case from its district's ops queries, or
    show it decided: the case sets what its application says in its first workflow task (release 1.4)."""
    application = Application.model_validate(population.by_scenario("hukou_verified")[7])
    other = "510105" if application.district_code != "510105" else "510104"
    forged = TypedSearchAttributes(
        [
            SearchAttributePair(sa.CASE_STATUS, "approved"),
            SearchAttributePair(sa.DISTRICT_CODE, other),
            SearchAttributePair(sa.SCHOOL_YEAR, application.school_year + 1),
        ]
    )
    handle = await product.client.start_workflow(
        EnrollmentCase.run,
        CaseInput(application=application, fingerprint=fingerprint(application)),
        id=f"misdescribed-{application.application_id}",
        task_queue=CASE_TASK_QUEUE,
        search_attributes=forged,
    )
    try:
        shown = await wait_until(
            lambda: handle.describe(),
            until=lambda described: described.typed_search_attributes.get(sa.ROUTING_PHASE) is not None,
            timeout=30,
            interval=0.1,
            message=f"{handle.id} set its routing phase",
            describe=lambda described: described.typed_search_attributes,
        )
        attributes = shown.typed_search_attributes
        assert attributes.get(sa.DISTRICT_CODE) == application.district_code
        assert attributes.get(sa.SCHOOL_YEAR) == application.school_year
        assert attributes.get(sa.CASE_STATUS) in ("verifying", "awaiting_review", "awaiting_school_selection")
    finally:
        await handle.terminate("misdescribed start, test over")
