"""Search speed on many contacts: `python bench/search.py --contacts 1000000`.

Fills a fresh database (SQLite by default) with synthetic Vietnamese and English contacts, then
times ContactService.find — the call behind /find and every plain-text lookup — for typical
queries, as an admin (everything) and as an agent (own leads only). Prints figures; asserts
nothing."""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, literal, select, update

from bot.container import Services, build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import Role, Source
from domain.text import fold
from storage import migrate
from storage.db import make_sessionmaker
from storage.models import CompanyRow, ContactRow, StageChangeRow, UserRow
from storage.report_projection import recount

FAMILY = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
    "Smith",
    "Johnson",
    "Brown",
    "Miller",
]
MIDDLE = ["Văn", "Thị", "Minh", "Ngọc", "Quốc", "Thanh", "Đức", "Anh", "Hữu", "Gia", ""]
GIVEN = [
    "An",
    "Bình",
    "Châu",
    "Dũng",
    "Giang",
    "Hà",
    "Hải",
    "Hùng",
    "Khoa",
    "Lan",
    "Linh",
    "Mai",
    "Nam",
    "Phúc",
    "Quân",
    "Sơn",
    "Tâm",
    "Thảo",
    "Trang",
    "Tuấn",
    "Vy",
    "Yến",
    "Emily",
    "David",
    "Sarah",
    "James",
]
TWO_YEARS_S = 2 * 365 * 86_400
QUERIES = [
    "nguyen van an",
    "tran thi",
    "Đặng Đức",
    "hoang",
    "tuan",
    "0912 345 678",
    "+84 912 345 678",
    "an.nguyen@example.vn",
    "cong ty minh",
    "zzz nobody",
]


async def fill(url: str, count: int, seed: int) -> int:
    """Inserts `count` contacts in bulk; returns the id of an agent owning about 1 in 50."""
    rng = random.Random(seed)
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await migrate.upgrade(services.engine)
    agent = await services.users.add(SYSTEM, "Bench Agent", Role.AGENT, telegram_id=1)
    companies = [
        f"Công ty {rng.choice(GIVEN)} {rng.choice(['Phát', 'Thịnh', 'Việt', 'Group'])} {n}"
        for n in range(2000)
    ]
    now = datetime.now(UTC)
    async with services.engine.begin() as connection:
        await connection.execute(
            insert(CompanyRow), [{"name": c, "name_key": fold(c)} for c in companies]
        )
        await connection.execute(
            insert(UserRow),
            [
                {
                    "name": f"Agent {n}",
                    "name_key": f"agent {n}",
                    "role": "agent",
                    "active": True,
                    "created_at": now,
                }
                for n in range(49)
            ],
        )
    batch = 20_000
    for start in range(0, count, batch):
        rows = []
        for n in range(start, min(start + batch, count)):
            parts = (rng.choice(FAMILY), rng.choice(MIDDLE), rng.choice(GIVEN))
            name = " ".join(part for part in parts if part)
            company_id = rng.randrange(1, len(companies) + 1) if rng.random() < 0.4 else None
            company = companies[company_id - 1] if company_id else ""
            # Created over the last two years; creation is the contact's first activity.
            created_at = now - timedelta(seconds=rng.randrange(TWO_YEARS_S))
            rows.append(
                {
                    "name": name,
                    "phone": f"+849{n:08d}" if n else "+84912345678",
                    "email": f"c{n}@example.vn" if n else "an.nguyen@example.vn",
                    "company_id": company_id,
                    "owner_id": agent.id if n % 50 == 0 else rng.randrange(2, 51),
                    "custom_fields": {},
                    "created_at": created_at,
                    "last_activity_at": created_at,
                    "version": 1,
                    "search_text": fold(f"{name} {company}"),
                }
            )
        async with services.engine.begin() as connection:
            await connection.execute(insert(ContactRow), rows)
    await services.close()
    assert agent.id is not None
    return agent.id


async def all_in_one_stage(url: str, count: int, seed: int, stage: str) -> Services:
    """A database of `count` synthetic contacts, all in `stage` of the AMIS stages, for the
    bulk benchmarks; returns its services (the caller closes them)."""
    await fill(url, count, seed)
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await services.stages.apply_template(SYSTEM, "amis")
    target = await services.contacts.stage_by_name(stage)
    async with services.engine.begin() as connection:
        await connection.execute(
            update(ContactRow).values(stage_id=target.id, stage_entered_at=ContactRow.created_at)
        )
        # Each contact came in through an import, straight into the stage.
        entries = select(
            ContactRow.id,
            literal(target.id),
            ContactRow.created_at,
            literal(Source.IMPORT.value),
        )
        await connection.execute(
            insert(StageChangeRow).from_select(
                ["contact_id", "to_stage_id", "at", "source"], entries
            )
        )
    started = time.perf_counter()
    async with make_sessionmaker(services.engine)() as session:
        await recount(session)
        await session.commit()
    took = time.perf_counter() - started
    print(f"(report tables of {count:,} contacts recounted in {took:.1f} s)")
    if services.engine.dialect.name == "sqlite":
        # Timings start from a settled database, not while the setup's log is being copied.
        with closing(sqlite3.connect(services.engine.url.database or "")) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return services


def bulk_arguments(doc: str | None) -> tuple[str, int]:
    """`--contacts N` and `--database-url` (default: a new SQLite file): the URL and N."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    return url, args.contacts


async def measure(url: str, agent_id: int, repeats: int) -> None:
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    agent = next(user for user in await services.users.everyone() if user.id == agent_id)
    print(f"{'query':<24}{'as':<7}{'hits':>5}{'median ms':>11}{'p95 ms':>9}")
    for query in QUERIES:
        for label, user in (("admin", SYSTEM), ("agent", agent)):
            timings = []
            hits = 0
            for _ in range(repeats):
                started = time.perf_counter()
                hits = len(await services.contacts.find(user, query, limit=10))
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
            print(f"{query:<24}{label:<7}{hits:>5}{statistics.median(timings):>11.1f}{p95:>9.1f}")
    await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp directory")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    started = time.perf_counter()
    agent_id = asyncio.run(fill(url, args.contacts, args.seed))
    print(f"filled {args.contacts:,} contacts in {time.perf_counter() - started:.1f} s ({url})")
    asyncio.run(measure(url, agent_id, args.repeats))


if __name__ == "__main__":
    main()
