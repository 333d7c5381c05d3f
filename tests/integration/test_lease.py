"""The scheduler's lease (storage/lease.py) on SQLite and PostgreSQL: one holder at a time,
expiring by the database's clock."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.container import Services
from domain.model import utcnow
from storage.db import make_sessionmaker
from storage.lease import Lease
from storage.models import LeaseRow

MINUTE = timedelta(minutes=1)


def lease(services: Services, holder: str, ttl: timedelta = MINUTE) -> Lease:
    return Lease(make_sessionmaker(services.engine), "scheduler", holder, ttl)


async def test_one_holder_at_a_time_until_it_lets_go(services: Services) -> None:
    first, second = lease(services, "first"), lease(services, "second")
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.acquire()  # renewed
    await first.release()
    assert await second.acquire()
    assert not await first.acquire()


async def test_a_lease_whose_time_passed_on_the_databases_clock_is_taken_over(
    services: Services,
) -> None:
    # Renewed for "minus one second": expired by the database's clock the moment it is written.
    stale = lease(services, "stale", ttl=-timedelta(seconds=1))
    assert await stale.acquire()
    assert await lease(services, "next").acquire()
    assert not await stale.acquire()


async def test_the_expiry_reads_back_as_a_time_one_length_ahead(services: Services) -> None:
    """Written by the database in its own terms, read back as the column's aware UTC time (the
    database and this test share one host's clock here)."""
    assert await lease(services, "holder").acquire()
    async with make_sessionmaker(services.engine)() as session:
        expires = await session.scalar(select(LeaseRow.expires_at))
    assert expires is not None
    assert abs(expires - (utcnow() + MINUTE)) < timedelta(seconds=10)
