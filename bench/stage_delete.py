"""Deleting a stage that holds N contacts, reassigning them, and undoing it:
`python bench/stage_delete.py --contacts 1000000`. Prints seconds; asserts nothing."""

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
from storage.models import ContactRow


async def run(url: str, count: int) -> None:
    await fill(url, count, seed=3)
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await services.stages.apply_template(SYSTEM, "amis")
    mql = await services.contacts.stage_by_name("MQL")
    async with services.engine.begin() as connection:
        await connection.execute(update(ContactRow).values(stage_id=mql.id))
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(run(url, args.contacts))


if __name__ == "__main__":
    main()
