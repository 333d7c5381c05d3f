"""Export speed and memory on many contacts: `python -m bench.export --contacts 1000000`.

Fills a fresh database (SQLite by default) with the synthetic contacts of bench/search.py — in
a child process, so that filling does not count towards this process's peak memory — then
times ExportService.export (what `stagekeeper export` and /export run) to a CSV file, as an
admin (everything) and as an agent (about 1 contact in 50). Prints figures; asserts nothing.

Peak memory is the process's maximum resident set size (getrusage ru_maxrss), before and after
exporting: flat when the export streams."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

from bench.search import fill
from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM


def _fill(url: str, count: int, seed: int) -> int:
    return asyncio.run(fill(url, count, seed))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def measure(url: str, agent_id: int, folder: Path, batch_size: int | None) -> None:
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    if batch_size:
        services.exports._batch_size = batch_size
    agent = next(user for user in await services.users.everyone() if user.id == agent_id)
    print(f"{'as':<7}{'rows':>10}{'seconds':>9}{'rows/s':>10}{'MiB file':>10}{'peak MiB':>10}")
    for label, user in (("agent", agent), ("admin", SYSTEM)):
        path = folder / f"export-{label}.csv"
        started = time.perf_counter()
        with path.open("w", encoding="utf-8-sig", newline="") as out:
            result = await services.exports.export(user, out)
        seconds = time.perf_counter() - started
        size = path.stat().st_size / 2**20
        rate = result.rows / seconds if seconds else 0
        print(
            f"{label:<7}{result.rows:>10,}{seconds:>9.1f}{rate:>10,.0f}{size:>10.1f}"
            f"{peak_mib():>10.0f}"
        )
    await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="default: the service's own")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="stagekeeper-bench-"))
    url = args.database_url or f"sqlite+aiosqlite:///{folder}/bench.db"
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        agent_id = pool.apply(_fill, (url, args.contacts, args.seed))
    print(f"filled {args.contacts:,} contacts in {time.perf_counter() - started:.1f} s ({url})")
    print(f"peak memory before exporting: {peak_mib():.0f} MiB")
    asyncio.run(measure(url, agent_id, folder, args.batch_size))
    print(f"files in {folder}")


if __name__ == "__main__":
    main()
