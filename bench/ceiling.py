"""The engine's ceiling: the same shape of work as a case with nothing inside it.

Four activities in parallel (the verifiers), a wait for one signal (the
review), one final activity (the platform result): what the Temporal server
and the SDK sustain on this machine when the product's own work is removed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

CEILING_QUEUE = "bench-ceiling"


@activity.defn
async def no_op(step: str) -> str:
    return step


@workflow.defn(name="CeilingCase")
class CeilingCase:
    def __init__(self) -> None:
        self._reviewed = False

    @workflow.run
    async def run(self) -> str:
        await asyncio.gather(
            *(
                workflow.execute_activity(no_op, f"verify-{i}", start_to_close_timeout=timedelta(seconds=30))
                for i in range(4)
            )
        )
        await workflow.wait_condition(lambda: self._reviewed)
        return await workflow.execute_activity(no_op, "result", start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal
    def review(self) -> None:
        self._reviewed = True
