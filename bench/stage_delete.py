"""Deleting a stage that holds N contacts, reassigning them, and undoing it:
`python bench/stage_delete.py --contacts 1000000`. Prints seconds; asserts nothing."""

from __future__ import annotations

import asyncio
import time

from bench.search import all_in_one_stage, bulk_arguments
from domain.access import SYSTEM


async def run(url: str, count: int) -> None:
    services = await all_in_one_stage(url, count, seed=3, stage="MQL")
    started = time.perf_counter()
    result = await services.stages.delete(SYSTEM, "MQL", reassign_to="SQL")
    deleted = time.perf_counter() - started
    print(f"deleted a stage of {result.moved:,} contacts, reassigned to SQL: {deleted:.1f} s")
    assert result.operation_id is not None
    started = time.perf_counter()
    undone = await services.operations.undo(SYSTEM, result.operation_id)
    print(
        f"undid it ({undone.reverted:,} contacts back, stage restored): "
        f"{time.perf_counter() - started:.1f} s"
    )
    await services.close()


def main() -> None:
    asyncio.run(run(*bulk_arguments(__doc__)))


if __name__ == "__main__":
    main()
