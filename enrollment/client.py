"""One way to reach Temporal, so every process agrees on the namespace and the data converter."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from enrollment import secrets
from enrollment.codec import EncryptionCodec, parse_keys
from enrollment.settings import Settings


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, encrypted with the configured keys before they leave the process."""
    keys = parse_keys(secrets.payload_keys(settings))
    codec = EncryptionCodec(keys, settings.payload_key_id or next(iter(keys)))
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
