"""A bulk move of every contact of a saved view, and of a search, then their undo:
`python -m bench.bulk_move --contacts 1000000`. Prints seconds; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from sqlalchemy import update

from bench.search import fill
from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.operations import Selection
from storage.models import ContactRow


async def run(url: str, count: int) -> None:
    await fill(url, count, seed=4)
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await services.stages.apply_template(SYSTEM, "amis")
    lead = await services.contacts.stage_by_name("Lead")
    async with services.engine.begin() as connection:
        await connection.execute(update(ContactRow).values(stage_id=lead.id))
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(run(url, args.contacts))


if __name__ == "__main__":
    main()
