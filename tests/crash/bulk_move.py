"""`python -m tests.crash.bulk_move QUERY STAGE [--reason R] --database-url URL`: the bulk move an
admin confirms in chat (`OperationService.bulk_move`: every contact a search finds, moved in one
transaction), in a process of its own. The command line offers no bulk move, and the crash
tests kill one."""

from __future__ import annotations

import argparse
import asyncio

from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.operations import Selection


async def move(url: str, query: str, stage: str, reason: str | None) -> str:
    services = build_services(Settings(database_url=url))
    try:
        operation = await services.operations.bulk_move(
            SYSTEM, Selection(query=query), stage, reason=reason
        )
    finally:
        await services.close()
    return f"Moved {operation.contacts} contact(s) to {stage} (operation #{operation.id})."


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.crash.bulk_move", description=__doc__)
    parser.add_argument("query")
    parser.add_argument("stage")
    parser.add_argument("--reason")
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    print(asyncio.run(move(args.database_url, args.query, args.stage, args.reason)))


if __name__ == "__main__":
    main()
