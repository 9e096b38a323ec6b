"""The applicant side of the stand-in platform and of the enrollment system's front end.

In phase two the provincial platform accepts an application (受理) and
dispatches its data to the enrollment system (办件数据分发流转至省升招系统); in
phase one parents apply in the enrollment system's own front end. Both hand
applications in through the product's HTTP API with their own client
credential, as the real systems would, and the API's answer (the case's
acceptance-conditions result) is the acknowledgement the platform keeps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.callers import ClientRegistry
from api.signing import SignedRequests

CONCURRENCY = 16


@dataclass(frozen=True)
class Sender:
    """One registered client of the API: who hands in, and the intake channel its applications come by."""

    client_id: str
    secret: str
    channel: str


class FrontDoor:
    """The product's API as the platform and the enrollment-system front end reach it."""

    def __init__(self, api_url: str, senders: dict[str, Sender]):
        self.api_url = api_url.rstrip("/")
        self.senders = senders

    @classmethod
    def from_clients_file(cls, api_url: str, path: Path) -> FrontDoor:
        """The first platform and enrollment-system clients in the API's client list (api/callers.py)."""
        registry = ClientRegistry.load(path)
        senders: dict[str, Sender] = {}
        for kind in ("platform", "enrollment_system"):
            client = registry.first_of(kind)
            if client is not None:
                senders[kind] = Sender(client.client_id, client.secret.get_secret_value(), client.channel)
        return cls(api_url, senders)

    async def hand_in(self, channel: str, applications: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hand each application in as the sender of `channel`; one result per application, in order."""
        sender = self.senders[channel]
        gate = asyncio.Semaphore(CONCURRENCY)
        auth = SignedRequests(sender.client_id, sender.secret.encode())
        async with httpx.AsyncClient(base_url=self.api_url, auth=auth, timeout=30) as api:

            async def one(application: dict[str, Any]) -> dict[str, Any]:
                async with gate:
                    try:
                        response = await api.post("/v1/applications", json={**application, "channel": channel})
                    except httpx.HTTPError as err:
                        return {"application_id": application.get("application_id"), "error": type(err).__name__}
                answer = response.json()
                return {
                    "application_id": application.get("application_id"),
                    "status_code": response.status_code,
                    **({"errors": answer["errors"]} if "errors" in answer else {"answer": answer}),
                }

            return list(await asyncio.gather(*(one(application) for application in applications)))
