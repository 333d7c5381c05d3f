"""A whole import (parse, match, apply, in one transaction) of N synthetic rows in upsert mode:
`python -m bench.import_apply --rows 20000`. Prints seconds and peak memory; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import resource
import tempfile
import time

from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.imports import ImportOptions
from storage import migrate

NAMES = ["Nguyễn Văn An", "Trần Thị Bích", "Lê Minh Châu", "Phạm Thu Hà", "Emily Carter"]
STAGES = ["Lead", "MQL", "SQL", "Customer"]


def synthetic(rows: int, seed: int = 5) -> bytes:
    rng = random.Random(seed)
    out = io.StringIO()
    out.write("name,phone,email,stage,source,tags\n")
    for n in range(rows):
        out.write(
            f"{rng.choice(NAMES)} {n},0{rng.choice('39785')}{n:08d},c{n}@example.vn,"
            f"{rng.choice(STAGES)},Zalo,VIP\n"
        )
    return out.getvalue().encode()


async def run(rows: int) -> None:
    url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await migrate.upgrade(services.engine)
    await services.stages.apply_template(SYSTEM, "amis")
    data = synthetic(rows)
    for label in ("first import (all new)", "same file again (all matched, unchanged)"):
        started = time.perf_counter()
        report = await services.imports.run(SYSTEM, data, ImportOptions())
        took = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{label}: {rows:,} rows in {took:.1f} s ({rows / took:,.0f} rows/s); created "
            f"{report.created:,}, unchanged {report.unchanged:,}; peak {peak:,.0f} MiB"
        )
    await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    asyncio.run(run(parser.parse_args().rows))


if __name__ == "__main__":
    main()
