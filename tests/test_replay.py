"""Replay: the current workflow code must reproduce the commands of histories already recorded.

Cases live for weeks, so a change to EnrollmentCase that is not wrapped in
`workflow.patched` would break the cases already running. The committed
histories under tests/histories were recorded from earlier versions; the
fresh ones cover every path of today's code. Set RECORD_HISTORIES=<label>
(for example the release, `v2`) to add the fresh run's histories to the
committed set as `<label>-<path>.json`; never delete the older ones while cases
recorded by them may still be running.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from enrollment.case import OfflineRegistrationSignal, ReviewSignal, SupplementSignal, WithdrawSignal
from tests.processes import TEST_CONVERTER
from workflows.enrollment_case import EnrollmentCase

HISTORIES = Path(__file__).parent / "histories"


def replayer() -> Replayer:
    return Replayer(workflows=[EnrollmentCase], data_converter=TEST_CONVERTER)


async def test_committed_histories_replay_without_nondeterminism():
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no recorded histories: run with RECORD_HISTORIES=<label>"
    for path in files:
        history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text(encoding="utf-8")))
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_every_path_of_the_current_code_replays(stack, workers):
    def review(app, decision, opinion="同意"):
        return ReviewSignal(reviewer_id="r-01", district_code=app.district_code, decision=decision, opinion=opinion)

    handles = {}

    approved = stack.application("hukou_verified", index=14)
    handles["approved"] = handle = await stack.submit(approved)
    await stack.wait_for(handle, "awaiting_review")
    await handle.signal(EnrollmentCase.review, review(approved, "approve"))

    not_eligible = stack.application("not_eligible_age", index=2)
    handles["not_eligible"] = await stack.submit(not_eligible)

    offline = stack.application("verification_failed_mismatch", index=1)
    handles["offline_supplement_rejected"] = handle = await stack.submit(offline)
    await stack.wait_for(handle, "awaiting_offline_registration")
    await handle.signal(EnrollmentCase.register_offline, OfflineRegistrationSignal(staff_id="s-01", district_code=offline.district_code, materials=["户口簿"]))
    await stack.wait_for(handle, "awaiting_review", "awaiting_school_selection")
    if (await stack.status(handle)).status == "awaiting_review":
        await handle.signal(EnrollmentCase.review, review(offline, "request_supplement", "补充居住证明"))
        await stack.wait_for(handle, "awaiting_supplement")
        await handle.signal(EnrollmentCase.supplement, SupplementSignal(materials=["居住证明"]))
        await stack.wait_for(handle, "awaiting_review")
        await handle.signal(EnrollmentCase.review, review(offline, "reject", "不符合条件"))

    withdrawn = stack.application("without_school_choice", index=4)
    handles["withdrawn"] = handle = await stack.submit(withdrawn)
    await stack.wait_for(handle, "awaiting_school_selection")
    await handle.signal(EnrollmentCase.withdraw, WithdrawSignal(reason="搬家"))

    expired = stack.application("verification_failed_not_found", index=3)
    handles["expired"] = await stack.submit(expired)

    for name, handle in handles.items():
        await stack.result(handle)
        history = await handle.fetch_history()
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{name}: {result.replay_failure}"
        if os.environ.get("RECORD_HISTORIES"):
            (HISTORIES / f"{os.environ['RECORD_HISTORIES']}-{name}.json").write_text(history.to_json(), encoding="utf-8")
