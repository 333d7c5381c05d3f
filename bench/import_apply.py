"""Whole imports (read, match, apply, in one transaction) of N synthetic rows in upsert mode, on
SQLite: `python -m bench.import_apply --rows 1048576` (HubSpot's per-file maximum).

Three cases, one after the other on the same database: every row new; the same file again (every
row matched and unchanged); then a file of which every other row changes a known contact (its
stage or its name) and the others are new. Prints seconds, rows/s, CPU time (this process's
main thread, where rows are decided, and its other threads, SQLite's among them; the child
process that reads large files) and the peak memory so far (ru_maxrss) of this process and of
that child. Asserts nothing; stops by itself, or after --limit seconds."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import resource
import tempfile
import threading
import time
from collections.abc import Callable

from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.imports import ImportOptions
from storage import migrate

NAMES = ["Nguyễn Văn An", "Trần Thị Bích", "Lê Minh Châu", "Phạm Thu Hà", "Emily Carter"]
STAGES = ["Lead", "MQL", "SQL", "Customer"]
# A move every rule allows an import: forward, and out of no won or lost stage.
LATER = {"Lead": "MQL", "MQL": "SQL", "SQL": "Customer", "Customer": "Loyal customer"}
HEADER = "name,phone,email,stage,source,tags\n"


def contact_line(n: int, rng: random.Random, *, name: str | None = None) -> str:
    """Contact n: its phone and email depend on n alone, so another file can name it again."""
    operator = ("39", "90", "70", "86", "56")[n % 5]  # Vietnamese mobiles: 9 digits after 0
    return (
        f"{name or rng.choice(NAMES)} {n},0{operator}{n:07d},c{n}@example.vn,"
        f"{rng.choice(STAGES)},Zalo,VIP\n"
    )


def all_new(rows: int) -> bytes:
    rng = random.Random(5)
    out = io.BytesIO(HEADER.encode())
    out.seek(0, io.SEEK_END)
    for n in range(rows):
        out.write(contact_line(n, rng).encode())
    return out.getvalue()


def half_changed(rows: int) -> bytes:
    """Even rows: contact n of the first file, in another stage or under another name; odd
    rows: contacts the first file does not have."""
    rng = random.Random(5)
    fresh = random.Random(6)
    out = io.BytesIO(HEADER.encode())
    out.seek(0, io.SEEK_END)
    for n in range(rows):
        line = contact_line(n, rng)  # what the first file said, drawn in the same order
        if n % 2:
            line = contact_line(rows + n, fresh)
        elif n % 4:
            name, _, rest = line.partition(",")
            line = f"{name} (đổi tên),{rest}"
        else:
            head, _, tail = line.rpartition(",Zalo,")
            before, _, stage = head.rpartition(",")
            line = f"{before},{LATER[stage]},Zalo,{tail}"
        out.write(line.encode())
    return out.getvalue()


def peaks() -> str:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"peak {own:,.0f} MiB (reading child: {child:,.0f} MiB)"


def thread_seconds() -> dict[int, float]:
    """CPU time of each thread of this process, by thread id (Linux; empty elsewhere): the
    main thread decides, the database driver's thread runs SQLite."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def split(before: dict[int, float], after: dict[int, float]) -> str:
    """How the CPU time between two thread_seconds() went: main thread, other threads."""
    if not after:
        return ""
    main = threading.main_thread().native_id
    own = after.get(main, 0) - before.get(main, 0)
    others = sum(t - before.get(tid, 0) for tid, t in after.items() if tid != main)
    return f" (main thread {own:.1f} s, other threads {others:.1f} s)"


def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process (all its threads) and of its finished children: on a shared
    machine it tells the work apart from the waiting."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, child.ru_utime + child.ru_stime


async def run(rows: int, limit: float) -> None:
    url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await migrate.upgrade(services.engine)
    await services.stages.apply_template(SYSTEM, "amis")
    cases: list[tuple[str, Callable[[int], bytes]]] = [
        ("all new", all_new),
        ("same file again (all matched, unchanged)", all_new),
        ("half changed (stage or name), half new", half_changed),
    ]
    try:
        for label, make in cases:
            data = make(rows)
            own_before, child_before = cpu_seconds()
            threads_before = thread_seconds()
            started = time.perf_counter()
            report = await asyncio.wait_for(
                services.imports.run(SYSTEM, data, ImportOptions()), limit
            )
            took = time.perf_counter() - started
            own, child = cpu_seconds()
            threads = split(threads_before, thread_seconds())
            print(
                f"{label}: {rows:,} rows in {took:.1f} s ({rows / took:,.0f} rows/s); created "
                f"{report.created:,}, updated {report.updated:,}, unchanged "
                f"{report.unchanged:,}, rejected {report.rejected:,}; CPU {own - own_before:.1f} s"
                f"{threads} + {child - child_before:.1f} s in the reading child; {peaks()}",
                flush=True,
            )
    finally:
        await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--limit", type=float, default=600, help="seconds allowed per case")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.limit))


if __name__ == "__main__":
    main()
