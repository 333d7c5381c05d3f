"""How long an import keeps the event loop from serving anyone else, on SQLite: `python -m
bench.import_loop --rows 100000` (about the most a chat upload of 20 MB holds is 250,000 rows).

While a dry run and then the import of N new contacts run as in chat (with a progress callback),
a ticker asks to wake every 5 ms and records how late each wake-up came: the longest stall is
how long another person's message would wait for the bot to even look at it. A file under 8 MiB
is read in this process, a larger one by a child process (`storage.import_batches`), so both
sides of that line are worth a run. Prints seconds, rows/s, the progress reports heard and the
stalls; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from bench.import_apply import all_new
from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.imports import ImportOptions, ImportProgress
from storage import migrate

TICK = 0.005


class Stalls:
    """Lateness of a timer that should fire every TICK seconds."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(TICK)
            self.late.append(time.perf_counter() - asked - TICK)

    def __enter__(self) -> Stalls:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> str:
        late = sorted(self.late) or [0.0]
        p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
        over_100 = sum(1 for s in late if s > 0.1)
        return (
            f"event loop stalls: longest {late[-1] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"median {statistics.median(late) * 1000:.1f} ms, {over_100} over 100 ms "
            f"of {len(late):,} ticks"
        )


async def run(rows: int) -> None:
    url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await migrate.upgrade(services.engine)
    await services.stages.apply_template(SYSTEM, "amis")
    data = all_new(rows)
    print(f"{rows:,} rows, {len(data) / 2**20:.1f} MiB", flush=True)
    try:
        for label, options in (
            ("dry run", ImportOptions(dry_run=True)),
            ("import", ImportOptions()),
        ):
            heard: list[ImportProgress] = []

            async def progress(step: ImportProgress, heard: list[ImportProgress] = heard) -> None:
                heard.append(step)

            with Stalls() as stalls:
                started = time.perf_counter()
                report = await services.imports.run(SYSTEM, data, options, progress)
                took = time.perf_counter() - started
            print(
                f"{label}: {took:.1f} s ({rows / took:,.0f} rows/s), {report.created:,} created; "
                f"{len(heard)} progress reports; {stalls.summary()}",
                flush=True,
            )
    finally:
        await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.rows))


if __name__ == "__main__":
    main()
