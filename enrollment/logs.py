"""Structured logs with personal data masked before anything is written.

Identity numbers, phones and the values of name and address fields are
replaced wherever they appear, so a careless log call cannot leak them.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}\d{3}[\dXx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
# A field is personal when its name is, or ends with, one of these words: `guardian_name`,
# `hukou_address`; not `namespace` or `hostname`.
_PERSONAL_KEY = re.compile(r"(^|_)(names?|address(es)?|phones?|id_numbers?|birthplace|owner|employer)$", re.IGNORECASE)


def mask_text(text: str) -> str:
    text = _ID_NUMBER.sub(r"\1************", text)
    return _PHONE.sub(r"\1****\2", text)


def _is_personal_key(key: str) -> bool:
    return bool(_PERSONAL_KEY.search(key))


def _mask_value(key: str, value: object) -> object:
    if _is_personal_key(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_value(key, v) for v in value]
    return value


def mask_personal_data(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    return {key: _mask_value(key, value) for key, value in event_dict.items()}


def configure(json_output: bool | None = None, level: str | None = None) -> None:
    """JSON lines in production (ENROLL_LOG_FORMAT=json), readable lines in development.

    Standard-library logging (the Temporal SDK's, httpx's) goes through the same
    masking and rendering, tracebacks included.
    """
    if json_output is None:
        json_output = os.environ.get("ENROLL_LOG_FORMAT", "console") == "json"
    level_number = logging.getLevelName((level or os.environ.get("ENROLL_LOG_LEVEL", "INFO")).upper())
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                mask_personal_data,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_number)
    # httpx logs every request line at INFO; its URLs are ours, but the volume is not useful.
    logging.getLogger("httpx").setLevel(logging.WARNING)
