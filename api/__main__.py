"""`python -m api`: serve the front door (HTTP API) for the platform, the enrollment system and service points."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from api.app import ApiLimits, create_app
from api.callers import registered_clients
from enrollment import deployment_secrets, logs
from enrollment.client import connect
from enrollment.oidc import IdentityProvider
from enrollment.provers import ClientProver
from enrollment.settings import Settings
from stack.serving import serve, web_arguments
from store.database import open_pool, resolve_url

# The API's own client at the identity provider: it relays applicants' messages as the `platform` role.
API_IDENTITY_CLIENT = "enroll-api"


def main(argv: list[str] | None = None) -> None:
    args = web_arguments("python -m api", __doc__, 8000).parse_args(argv)
    logs.configure()
    settings = Settings.from_env()
    clients = registered_clients(settings)

    async def temporal_client() -> Client:
        return await connect(settings)

    async def case_store() -> AsyncConnectionPool:
        return await open_pool(resolve_url(settings.reveal_database_url()), max_size=8)

    limits = ApiLimits(settings.api_max_body_bytes, settings.api_requests_per_second, settings.api_burst)
    secret = deployment_secrets.identity_client_secret(settings, API_IDENTITY_CLIENT)
    identity = IdentityProvider(settings.identity_issuer)
    prove = ClientProver(identity, API_IDENTITY_CLIENT, secret)
    lookup_key = deployment_secrets.lookup_key(settings)
    app = create_app(settings, clients, lookup_key, temporal_client, case_store, prove, identity, limits)
    serve(app, args)


if __name__ == "__main__":
    main()
