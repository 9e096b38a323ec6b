"""`python -m bench.ceiling_worker_profile`: the engine-ceiling worker, connected as the product's workers are
on the cluster: the SDK's environment configuration (TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE, mTLS) and the
workers' own token (ENROLL_TEMPORAL_CLIENT_ID), through enrollment.client.connect."""

import asyncio
import os
import traceback

from temporalio.converter import DataConverter
from temporalio.worker import Worker

from bench.ceiling import CEILING_QUEUE, CeilingCase, no_op
from enrollment.client import connect
from enrollment.settings import Settings


async def main() -> None:
    client = await connect(Settings.from_env(), converter=DataConverter.default)
    async with Worker(client, task_queue=CEILING_QUEUE, workflows=[CeilingCase], activities=[no_op]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException:
        traceback.print_exc()
    os._exit(0)
