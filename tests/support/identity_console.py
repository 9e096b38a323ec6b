"""The review console as tests run it, against the session's identity provider stand-in, and people
signing in to it over real HTTP the way a browser does: the console's sign-in button, the provider's
sign-in page, the callback."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from console.app import IdentityClient, create_app
from enrollment.identity import LookupSecret
from standins.identity_provider import RunningIdentityProvider
from store.database import open_pool
from tests.support.identity import CLIENT_SECRETS, CONSOLE, password
from tests.support.keys import TEST_CONVERTER
from tests.support.served import ServedApp

# The look-up key tests/support/processes.product_environment gives the worker processes.
PRODUCT_LOOKUP = LookupSecret(b"end-to-end-test-key", "standard")
_REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


@contextlib.asynccontextmanager
async def served_console(
    temporal_address: str, platform_url: str, database_url: str, issuer: str, **options: Any
) -> AsyncIterator[ServedApp]:
    """The console on a free port; `options` are create_app's keyword options (session policy, limits)."""

    async def temporal_client() -> Client:
        return await Client.connect(temporal_address, data_converter=TEST_CONVERTER)

    async def case_store() -> AsyncConnectionPool:
        return await open_pool(database_url, max_size=2)

    identity = IdentityClient(issuer, CLIENT_SECRETS[CONSOLE])
    app = create_app(temporal_client, case_store, identity, platform_url, PRODUCT_LOOKUP, **options)
    async with ServedApp(app) as served:
        yield served


def provider_form(browser: httpx.Client, console: ServedApp, next_path: str = "") -> httpx.Response:
    """Press the console's sign-in button: the provider's sign-in page it leads to."""
    started = browser.post(f"{console.base_url}/signin", data={"next": next_path})
    assert started.status_code == 303, started.text
    form = browser.get(started.headers["location"])
    assert form.status_code == 200 and _REQUEST_ID.search(form.text), form.text
    return form


def submit_provider_form(browser: httpx.Client, form: httpx.Response, sub: str, secret: str = "") -> httpx.Response:
    """Fill in the provider's sign-in page as `sub` and follow its redirect back to the console's callback."""
    match = _REQUEST_ID.search(form.text)
    assert match is not None
    answer = browser.post(
        str(form.url.copy_with(query=None)),
        data={"request_id": match.group(1), "username": sub, "password": secret or password(sub)},
    )
    assert answer.status_code == 303, answer.text
    return browser.get(answer.headers["location"])


def signed_in(console: ServedApp, sub: str) -> httpx.Client:
    """A fresh browser signed in to the console as `sub` (a reviewer or staff account of the stand-in)."""
    browser = httpx.Client(base_url=console.base_url, timeout=30)
    done = submit_provider_form(browser, provider_form(browser, console), sub)
    assert done.status_code == 303 and done.headers["location"] in ("/queue", "/offline", "/supervisor"), done.text
    return browser


def set_disabled(provider: RunningIdentityProvider, sub: str, disabled: bool) -> None:
    """Disable (or enable again) an account at the provider, as its administrator does."""
    answer = httpx.patch(
        f"{provider.base_url}/admin/accounts/{sub}",
        json={"disabled": disabled},
        headers={"Authorization": f"Bearer {provider.admin_secret}"},
    )
    answer.raise_for_status()
