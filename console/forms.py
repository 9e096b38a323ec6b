"""Reading a posted form within fixed limits, before anything in it is trusted."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from console.pages import Refusal

MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 50
FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (the first value of each), read chunk by chunk so an oversized body is cut off early.

    Only url-encoded forms: the console's pages send nothing else, and it keeps multipart parsing out.
    """
    if request.headers.get("content-type", "").split(";")[0].strip() != FORM_TYPE:
        raise Refusal(415, "表单格式错误 Unsupported form", f"Forms are sent as {FORM_TYPE}.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refusal(413, "表单过大 Form too large", f"A form may hold at most {MAX_FORM_BYTES // 1024} KiB.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "表单错误 Bad form", "The form could not be read.") from None
    return {key: values[0] for key, values in parsed.items()}
