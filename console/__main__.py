"""`python -m console`: serve the review console for reviewers and service-point staff."""

from __future__ import annotations

from console.app import create_app
from enrollment import deployment_secrets, logs
from enrollment.client import connect
from enrollment.settings import Settings
from stack.serving import serve, web_arguments
from store.database import open_pool, resolve_url


def main(argv: list[str] | None = None) -> None:
    args = web_arguments("python -m console", __doc__, 8090).parse_args(argv)
    logs.configure()
    settings = Settings.from_env()
    token_secret = deployment_secrets.token_secret(settings)

    async def temporal_client():
        return await connect(settings)

    async def case_store():
        return await open_pool(resolve_url(settings.reveal_database_url()), max_size=4)

    app = create_app(
        temporal_client,
        case_store,
        token_secret,
        settings.platform_url,
        http_timeout_seconds=settings.http_timeout_seconds,
    )
    serve(app, args)


if __name__ == "__main__":
    main()
