"""A lease in the database: among several bot processes on one database, the one holding it
runs the scheduler. The holder renews it well before it expires; when the holder dies, another
process takes it over once it has expired.

Expiry is by the database's clock, never a host's: processes on several hosts compare one
clock, so a host whose clock runs ahead cannot take a lease that is still held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, literal, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import LeaseRow


class Lease:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        name: str,
        holder: str,
        ttl: timedelta,
    ) -> None:
        self._sessions = sessions
        self.name = name
        self.holder = holder
        self.ttl = ttl

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this holder has it."""
        async with self._sessions() as session:
            now, expires = _now_and_expiry(session, self.ttl)
            renewed = await session.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.name == self.name,
                    or_(LeaseRow.holder == self.holder, LeaseRow.expires_at < now),
                )
                .values(holder=self.holder, expires_at=expires)
            )
            if int(renewed.rowcount) == 1:  # type: ignore[attr-defined]
                await session.commit()
                return True
            try:
                await session.execute(
                    insert(LeaseRow).values(name=self.name, holder=self.holder, expires_at=expires)
                )
                await session.commit()
            except IntegrityError:  # someone else holds it
                return False
        return True

    async def release(self) -> None:
        async with self._sessions() as session:
            await session.execute(
                delete(LeaseRow).where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
            )
            await session.commit()


def _now_and_expiry(
    session: AsyncSession, ttl: timedelta
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The database's now, and `ttl` after it, as SQL in the form expires_at is stored."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now(), func.now() + literal(ttl)
    # SQLite keeps UTC as text, as SQLAlchemy writes it: 2025-06-02 09:30:00.123000.
    seconds = f"{ttl.total_seconds():+} seconds"
    stamp = "%Y-%m-%d %H:%M:%f"
    return (
        func.strftime(stamp, "now").concat("000"),
        func.strftime(stamp, "now", seconds).concat("000"),
    )
