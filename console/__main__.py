"""`python -m console`: serve the review console for reviewers and service-point staff."""

from __future__ import annotations

import datetime as dt

from console.app import IdentityClient, SessionPolicy, create_app
from console.backends import CONSOLE_CLIENT
from enrollment import deployment_secrets, logs
from enrollment.client import connect
from enrollment.settings import Settings
from stack.serving import serve, web_arguments
from store.database import open_pool, resolve_url


def main(argv: list[str] | None = None) -> None:
    args = web_arguments("python -m console", __doc__, 8090).parse_args(argv)
    logs.configure()
    settings = Settings.from_env()
    identity = IdentityClient(
        settings.identity_issuer, deployment_secrets.identity_client_secret(settings, CONSOLE_CLIENT)
    )

    async def temporal_client():
        return await connect(settings)

    async def case_store():
        return await open_pool(resolve_url(settings.reveal_database_url()), max_size=4)

    app = create_app(
        temporal_client,
        case_store,
        identity,
        settings.platform_url,
        deployment_secrets.lookup_key(settings),
        http_timeout_seconds=settings.http_timeout_seconds,
        session_policy=SessionPolicy(
            lifetime=dt.timedelta(hours=settings.console_session_hours),
            idle=dt.timedelta(minutes=settings.console_idle_minutes),
        ),
    )
    serve(app, args)


if __name__ == "__main__":
    main()
