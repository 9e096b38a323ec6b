"""`python -m bench.ceiling_worker_profile`: the engine-ceiling worker, connected through the SDK's environment
configuration (TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE), as the product's workers are on the cluster (mTLS)."""

import asyncio
import os
import traceback

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.worker import Worker

from bench.ceiling import CEILING_QUEUE, CeilingCase, no_op


async def main() -> None:
    client = await Client.connect(**ClientConfig.load_client_connect_config())
    async with Worker(client, task_queue=CEILING_QUEUE, workflows=[CeilingCase], activities=[no_op]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException:
        traceback.print_exc()
    os._exit(0)
