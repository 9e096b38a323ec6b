"""`python -m bench.ceiling_worker ADDRESS`: a worker for the engine-ceiling workflow."""

import asyncio
import os
import sys
import traceback

from temporalio.client import Client
from temporalio.worker import Worker

from bench.ceiling import CEILING_QUEUE, CeilingCase, no_op


async def main(address: str) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue=CEILING_QUEUE, workflows=[CeilingCase], activities=[no_op]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except BaseException:
        traceback.print_exc()
    sys.stderr.flush()
    os._exit(0)
