"""A lease in the database: among several bot processes on one database, the one holding it
runs the scheduler. The holder renews it well before it expires; when the holder dies, another
process takes it over once it has expired."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.model import utcnow
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
        now = utcnow()
        async with self._sessions() as session:
            renewed = await session.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.name == self.name,
                    or_(LeaseRow.holder == self.holder, LeaseRow.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl)
            )
            if int(renewed.rowcount) == 1:  # type: ignore[attr-defined]
                await session.commit()
                return True
            session.add(LeaseRow(name=self.name, holder=self.holder, expires_at=now + self.ttl))
            try:
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
