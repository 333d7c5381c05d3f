"""A bulk move of every contact of a saved view, and of a search, then their undo:
`python -m bench.bulk_move --contacts 1000000`. Prints seconds; asserts nothing."""

from __future__ import annotations

import asyncio
import time

from bench.search import all_in_one_stage, bulk_arguments
from domain.access import SYSTEM
from domain.services.operations import Selection


async def run(url: str, count: int) -> None:
    services = await all_in_one_stage(url, count, seed=4, stage="Lead")
    view = await services.views.save(SYSTEM, "All leads", "stage=Lead", shared=True)
    for label, selection, target in (
        ("the view 'stage=Lead'", Selection(view_id=view.id), "MQL"),
        ("the search 'nguyen'", Selection(query="nguyen"), "SQL"),
    ):
        started = time.perf_counter()
        operation = await services.operations.bulk_move(SYSTEM, selection, target)
        moved = time.perf_counter() - started
        print(f"moved {operation.contacts:,} contacts of {label} to {target}: {moved:.1f} s")
        assert operation.id is not None
        started = time.perf_counter()
        undone = await services.operations.undo(SYSTEM, operation.id)
        print(f"  undid it ({undone.reverted:,} back): {time.perf_counter() - started:.1f} s")
    await services.close()


def main() -> None:
    asyncio.run(run(*bulk_arguments(__doc__)))


if __name__ == "__main__":
    main()
