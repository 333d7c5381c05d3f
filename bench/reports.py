"""Report speed: `python -m bench.reports --contacts 1000000` (SQLite by default).

Fills a fresh database with N synthetic contacts created over the last two years, each with five
stage changes (forward moves with skips, wins, losses and reopenings) and most with a logged
call, fills the report tables from them in one recount, then times every report through
ReportService as an admin (everything), a manager (a team of 10 of the 50 agents) and an agent,
over the default period (the last 30 days) and over the last year. Prints milliseconds, the
fastest of the repeats (other processes on a shared machine only ever add time); asserts
nothing."""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, text

from bot.container import Services, build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import Role, User
from domain.reports import Period
from storage import migrate, report_projection
from storage.db import make_sessionmaker
from storage.models import ActivityRow, ContactRow, StageChangeRow, StageRow, UserRow

AGENTS = 50
TEAM = 10
SOURCES = ["Zalo", "Facebook", "Website", "Hội chợ", "Giới thiệu", None]
REPORTS = ("snapshot", "funnel", "sources", "conversion", "leaderboard", "time_in_stage")
BATCH = 20_000


async def fill(services: Services, count: int, seed: int) -> None:
    rng = random.Random(seed)
    await services.stages.apply_template(SYSTEM, "amis")
    async with services.engine.connect() as connection:
        stages = dict((await connection.execute(select(StageRow.name, StageRow.id))).all())
    # Forward through the open stages (sometimes skipping one), then won or lost; a lost lead is
    # sometimes reopened.
    forward = {
        None: ["Lead", "Lead", "MQL"],
        "Lead": ["MQL", "MQL", "SQL", "Unsubscribed"],
        "MQL": ["SQL", "SQL", "Customer", "Disqualified"],
        "SQL": ["Customer", "Customer", "Disqualified", "Unsubscribed"],
        "Customer": ["Loyal customer"],
        "Loyal customer": ["Unsubscribed"],
        "Unsubscribed": ["Lead", "MQL"],
        "Disqualified": ["MQL", "SQL"],
    }
    now = datetime.now(UTC)
    async with services.engine.begin() as connection:
        await connection.execute(
            insert(UserRow),
            [
                {
                    "name": f"Agent {n}",
                    "name_key": f"agent {n}",
                    "role": "agent",
                    "team": f"team {n // TEAM}",
                    "active": True,
                    "created_at": now,
                }
                for n in range(AGENTS)
            ],
        )
    next_change = 1
    for start in range(0, count, BATCH):
        contacts, changes, calls = [], [], []
        for n in range(start, min(start + BATCH, count)):
            created = now - timedelta(seconds=rng.randrange(730 * 86_400))
            moments = sorted(
                created + timedelta(seconds=rng.randrange(1, 40 * 86_400)) for _ in range(4)
            )
            # Leads created lately have had less time: squeeze their history before now.
            span = (moments[-1] - created) / max(now - created, timedelta(seconds=1))
            if span > 1:
                moments = [created + (m - created) / (span * 1.01) for m in moments]
            current = None
            for at in [created, *moments]:
                target = rng.choice(forward[current])
                changes.append(
                    {
                        "id": next_change,
                        "contact_id": n + 1,
                        "from_stage_id": stages.get(current) if current else None,
                        "to_stage_id": stages[target],
                        "at": at,
                        "source": "manual" if rng.random() < 0.8 else "import",
                    }
                )
                next_change += 1
                current = target
            contacts.append(
                {
                    "id": n + 1,
                    "name": f"Contact {n}",
                    "owner_id": rng.randrange(1, AGENTS + 1),
                    "source": rng.choice(SOURCES),
                    "stage_id": stages[current],
                    "custom_fields": {},
                    "created_at": created,
                    "stage_entered_at": changes[-1]["at"],
                    "last_activity_at": changes[-1]["at"],
                    "version": 1,
                    "search_text": f"contact {n}",
                }
            )
            if rng.random() < 0.6:
                called = created + timedelta(seconds=rng.randrange(60, 3 * 86_400))
                calls.append(
                    {"contact_id": n + 1, "kind": "call", "text": "…", "at": min(called, now)}
                )
        async with services.engine.begin() as connection:
            await connection.execute(insert(ContactRow), contacts)
            await connection.execute(insert(StageChangeRow), changes)
            if calls:
                await connection.execute(insert(ActivityRow), calls)


async def recount(services: Services, analyze: bool) -> None:
    async with make_sessionmaker(services.engine)() as session:
        await report_projection.recount(session)
        if analyze:
            await session.execute(text("ANALYZE"))
        await session.commit()


async def time_reports(services: Services, repeats: int) -> None:
    people = await services.users.everyone()
    agent = next(u for u in people if u.name == "Agent 7")
    manager = User(None, "Bench manager", Role.MANAGER, team=agent.team)
    today = datetime.now(services.settings.zone).date()
    periods = {
        "30 days": services.reports.period(),
        "365 days": Period(today - timedelta(days=364), today),
    }
    print(
        f"{'report':<15}{'period':<10}"
        + "".join(f"{who:>10}" for who in ("admin", "manager", "agent"))
    )
    for name in REPORTS:
        for label, period in periods.items():
            if name == "snapshot" and label != "30 days":
                continue
            cells = []
            for actor in (SYSTEM, manager, agent):
                timings = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    if name == "snapshot":
                        await services.reports.snapshot(actor)
                    else:
                        await getattr(services.reports, name)(actor, period)
                    timings.append((time.perf_counter() - started) * 1000)
                cells.append(min(timings))
            shown = "now" if name == "snapshot" else label
            print(f"{name:<15}{shown:<10}" + "".join(f"{ms:>10.1f}" for ms in cells))


async def run(
    url: str, count: int, repeats: int, seed: int, analyze: bool, time_only: bool
) -> None:
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    if time_only:
        await time_reports(services, repeats)
        await services.close()
        return
    await migrate.upgrade(services.engine)
    started = time.perf_counter()
    await fill(services, count, seed)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    await recount(services, analyze)
    counted = time.perf_counter() - started
    print(
        f"{count:,} contacts, {count * 5:,} stage changes: filled in {filled:.0f} s, "
        f"report tables recounted in {counted:.0f} s ({url})"
    )
    await time_reports(services, repeats)
    await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp directory")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE before timing")
    parser.add_argument(
        "--time-only", action="store_true", help="time the reports of a database filled before"
    )
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(run(url, args.contacts, args.repeats, args.seed, args.analyze, args.time_only))


if __name__ == "__main__":
    main()
