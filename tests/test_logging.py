"""Logs never carry identity numbers, phones, names or addresses in clear."""

import json

import pytest
import structlog

from enrollment import logs


@pytest.fixture(autouse=True)
def restore_logging():
    """configure() points the root logger at this test's captured stderr; put it back afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    structlog.reset_defaults()


def test_personal_data_is_masked_wherever_it_appears(capsys):
    logs.configure(json_output=True)
    log = structlog.get_logger()
    log.info(
        "verification answered",
        case_id="case-SC2027-000001",
        namespace="default",
        guardian_name="王建国",
        hukou_address="四川省成都市锦江区东光街道12号",
        detail="id 510104201905031242 phone 13812345678",
        persons=[{"id_number": "11010519491231002X", "name": "李丽"}],
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    for secret in ("王建国", "东光街道", "510104201905031242", "13812345678", "11010519491231002X", "李丽"):
        assert secret not in line
    assert event["case_id"] == "case-SC2027-000001", "identifiers that are not personal stay readable"
    assert event["namespace"] == "default"
    assert event["detail"] == "id 510104************ phone 138****5678"


def test_standard_library_logs_and_tracebacks_are_masked_too(capsys):
    import logging

    logs.configure(json_output=True)
    try:
        raise ValueError("record for 510104201905031242 is malformed")
    except ValueError:
        logging.getLogger("temporalio.activity").warning("Completing activity as failed", exc_info=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert "510104201905031242" not in line
    assert "510104************" in event["exception"] and event["logger"] == "temporalio.activity"


async def test_activity_logs_carry_the_case_and_its_workflow_run(stack, workers, capsys):
    logs.configure(json_output=True)
    stack.set_faults("hukou", error_rate=1.0, seed=3)
    application = stack.application("hukou_verified", index=17)
    handle = await stack.submit(application)
    await stack.wait_for_answers("hukou", "5000", 1)
    stack.set_faults("hukou", error_rate=0.0)
    await stack.wait_for(handle, "awaiting_review", timeout=60)

    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failures = [e for e in events if e.get("logger") == "activities.gateway" and e.get("activity") == "verify_hukou"]
    assert failures, "the failed department call was logged"
    described = await handle.describe()
    assert failures[0]["case_id"] == application.application_id
    assert failures[0]["workflow_id"] == handle.id and failures[0]["run_id"] == described.run_id
    text = "\n".join(json.dumps(e, ensure_ascii=False) for e in events)
    for secret in (application.student.id_number, application.student.name, *[g.phone for g in application.guardians]):
        assert secret not in text
