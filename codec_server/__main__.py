"""`python -m codec_server`: serve the codec for the Temporal UI and CLI."""

from __future__ import annotations

import argparse

import uvicorn

from codec_server.app import OnDecode, create_app, log_decode
from codec_server.identity import audit_reporter, provider_tokens
from enrollment import deployment_secrets, logs
from enrollment.client import payload_codec
from enrollment.settings import Settings

# The codec server's own client at the identity provider, for reporting decodes to the audit trail.
CODEC_IDENTITY_CLIENT = "enroll-codec"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m codec_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--cors-origin", action="append", help="the Temporal UI's origin (repeatable), e.g. http://127.0.0.1:8233"
    )
    parser.add_argument(
        "--audit-url", help="the API that records each decode in the audit trail (without it: a log line only)"
    )
    args = parser.parse_args(argv)
    logs.configure()
    settings = Settings.from_env()
    on_decode: OnDecode = log_decode
    if args.audit_url:
        secret = deployment_secrets.identity_client_secret(settings, CODEC_IDENTITY_CLIENT)
        on_decode = audit_reporter(settings.identity_issuer, args.audit_url, CODEC_IDENTITY_CLIENT, secret)
    app = create_app(
        payload_codec(settings),
        authorize=provider_tokens(settings.identity_issuer),
        cors_origins=args.cors_origin or ["http://127.0.0.1:8233", "http://localhost:8233"],
        on_decode=on_decode,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
