"""Hostile answers: HTTP 200 from a department or the platform that a client must not trust.

A broken gateway in front of a department, a proxy's error page, a schema change nobody announced,
a runaway export or a congested link all answer "200 OK". Each mode here spoils the honest answer
the stand-in computed (the platform has already recorded the push): the caller has to notice.
Every random choice comes from the service's own seeded RNG, passed in.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response, StreamingResponse

HUGE_BODY_BYTES = 5 * 1024 * 1024  # padding inside otherwise valid JSON, well past any sane cap
HUGE_BODY_CHUNK = 64 * 1024  # streamed, so a client that hangs up stops it
DRIP_INTERVAL = 0.25  # a few bytes every quarter second: far below any client's per-read timeout
DRIP_BYTES = 4

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)

Sent = Callable[[int], None]


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def bad_json(body: dict[str, Any], rng: random.Random, sent: Sent) -> Response:
    """HTTP 200 that is not JSON: the honest answer cut off half-way, or a proxy's HTML error page."""
    if rng.random() < 0.5:
        content, media_type = encode(body)[: len(encode(body)) // 2], "application/json"
    else:
        content, media_type = HTML_ERROR_PAGE, "text/html"
    sent(len(content))
    return Response(content, media_type=media_type)


def wrong_schema(
    service: str, body: dict[str, Any], rng: random.Random, person: tuple[str, str] | None
) -> dict[str, Any]:
    """Valid JSON with code 0000 (and the request id echoed) whose data has the wrong shape.

    The broken records carry the person's real name and identity number in the wrong places, so a
    client that quotes a value in an error message or a log line is caught leaking it.
    """
    spoiled = {**body, "code": "0000", "message": "成功"}
    if service == "platform":
        spoiled.pop("receipt_id", None)
        spoiled.update(rng.choice([{"receipt_id": 12345, "duplicate": "maybe"}, {"duplicate": "no"}]))
        return spoiled
    name, number = person or ("", "")
    variants: dict[str, list[Any]] = {
        "hukou": [
            {"name": name, "gender": 1, "birth_date": number, "hukou_region_code": 510104},
            [name, number],
        ],
        "residence_permit": [
            {"permit_number": 1234, "name": name, "valid_from": "soon", "valid_until": None},
            f"{name} {number}",
        ],
        "social_insurance": [
            {"name": name, "employer": None, "months_paid": "lots", "status": "maybe"},
            {"name": name, "months_paid": [number]},
        ],
        "property": [
            {"titles": "川(2021)成都市不动产权第0012345号"},
            {"titles": [{"owner": name, "floor_area_m2": "big", "registered_on": number}]},
        ],
    }
    spoiled["data"] = rng.choice(variants[service])
    return spoiled


def huge_body(body: dict[str, Any], sent: Sent) -> Response:
    """The honest answer with HUGE_BODY_BYTES of padding in a "padding" field: valid JSON, absurd size.

    Chunked, without a Content-Length, so the client cannot tell the size up front and must count.
    """
    opening = encode(body)[:-1] + b',"padding":"'
    filler = b"x" * HUGE_BODY_CHUNK

    async def stream() -> AsyncIterator[bytes]:
        for chunk in (opening, *([filler] * (HUGE_BODY_BYTES // HUGE_BODY_CHUNK)), b'"}'):
            yield chunk
            sent(len(chunk))  # resumed only once the server has taken the chunk

    return StreamingResponse(stream(), media_type="application/json")


def slow_drip(body: dict[str, Any], seconds: float, sent: Sent) -> StreamingResponse:
    """The honest answer (led by JSON whitespace), a few bytes every DRIP_INTERVAL for `seconds` in all.

    Status and headers leave at once and no pause reaches a per-read timeout, so only a client with a
    deadline for the whole exchange gives up before `seconds`.
    """
    content = encode(body)
    steps = max(1, math.ceil(seconds / DRIP_INTERVAL))
    size = max(DRIP_BYTES, math.ceil(len(content) / steps))
    content = b" " * (steps * size - len(content)) + content
    pause = seconds / steps

    async def stream() -> AsyncIterator[bytes]:
        for step in range(steps):
            await asyncio.sleep(pause)
            chunk = content[step * size : (step + 1) * size]
            yield chunk
            sent(len(chunk))

    return StreamingResponse(stream(), media_type="application/json")
