"""Logs never carry identity numbers, phones, names or addresses in clear."""

import json

import structlog

from enrollment import logging as enrollment_logging


def test_personal_data_is_masked_wherever_it_appears(capsys):
    enrollment_logging.configure(json_output=True)
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

    enrollment_logging.configure(json_output=True)
    try:
        raise ValueError("record for 510104201905031242 is malformed")
    except ValueError:
        logging.getLogger("temporalio.activity").warning("Completing activity as failed", exc_info=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert "510104201905031242" not in line
    assert "510104************" in event["exception"] and event["logger"] == "temporalio.activity"
