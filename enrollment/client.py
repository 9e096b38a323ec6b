"""One way to reach Temporal, so every process agrees on the connection, the namespace and the data converter.

The connection is the SDK's environment configuration (temporalio.envconfig): a TOML profile
(TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE) with TEMPORAL_API_KEY, TEMPORAL_TLS_* and the other TEMPORAL_*
variables over it, so Temporal Cloud, mTLS client certificates or an API key are configuration, not code.
A frontend that checks the identity provider's tokens gets this process's own (enrollment/temporal_tokens.py).
"""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import Runtime

from enrollment import deployment_secrets
from enrollment.codec import EncryptionCodec, parse_keys
from enrollment.settings import Settings
from enrollment.temporal_tokens import TemporalCredentials


def payload_codec(settings: Settings) -> EncryptionCodec:
    """Payload encryption with the configured keys and profile (the data converter's, and the codec server's)."""
    keys = parse_keys(deployment_secrets.payload_keys(settings))
    return EncryptionCodec(keys, settings.payload_key_id, profile=settings.crypto_profile)


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, encrypted with the configured keys before they leave the process."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=payload_codec(settings))


def connect_options(settings: Settings) -> ClientConnectConfig:
    """Client.connect's connection arguments: the SDK's profile, and Settings' address and namespace.

    Settings win when they were set (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, or a test's model_copy) and
    fill in what the profile leaves out; otherwise a profile's address would lose to the localhost default.
    """
    options = ClientConfig.load_client_connect_config()
    if "temporal_address" in settings.model_fields_set or not options.get("target_host"):
        options["target_host"] = settings.temporal_address
    if "temporal_namespace" in settings.model_fields_set or not options.get("namespace"):
        options["namespace"] = settings.temporal_namespace
    return options


def temporal_credentials(settings: Settings) -> TemporalCredentials | None:
    """This process's client at the identity provider for Temporal's frontend, when it needs a token there."""
    if settings.temporal_client_id is None:
        return None
    secret = deployment_secrets.identity_client_secret(settings, settings.temporal_client_id)
    return TemporalCredentials(settings.identity_issuer, settings.temporal_client_id, secret)


async def connect(settings: Settings, runtime: Runtime | None = None, converter: DataConverter | None = None) -> Client:
    """A client of the configured Temporal; with ENROLL_TEMPORAL_CLIENT_ID, sending this process's own token
    from the identity provider (renewed while the process runs) to a frontend that checks them. `converter`
    replaces the product's encrypting data converter (a benchmark's plain workflows)."""
    options = connect_options(settings)
    converter = converter or data_converter(settings)
    credentials = temporal_credentials(settings)
    if credentials is None:
        return await Client.connect(**options, data_converter=converter, runtime=runtime)
    return await credentials.connect(**options, data_converter=converter, runtime=runtime)
