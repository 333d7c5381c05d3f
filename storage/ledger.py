"""The ledger of Telegram updates already taken, so that an update delivered twice (a webhook
retry, a restart between handling and confirming) has its effect once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.model import utcnow
from storage.models import ProcessedUpdateRow

# Telegram keeps an unconfirmed update for at most a day; older entries can go.
KEEP = timedelta(days=2)


class UpdateLedger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def take(self, bot_id: int, update_id: int) -> bool:
        """True the first time an update is taken; False for every later delivery."""
        async with self._sessions() as session:
            session.add(ProcessedUpdateRow(bot_id=bot_id, update_id=update_id, taken_at=utcnow()))
            try:
                await session.commit()
            except IntegrityError:
                return False
        return True

    async def release(self, bot_id: int, update_id: int) -> None:
        """Forget an update whose handling failed, so that a redelivery may try again."""
        async with self._sessions() as session:
            await session.execute(
                delete(ProcessedUpdateRow).where(
                    ProcessedUpdateRow.bot_id == bot_id, ProcessedUpdateRow.update_id == update_id
                )
            )
            await session.commit()

    async def forget_old(self) -> int:
        async with self._sessions() as session:
            result = await session.execute(
                delete(ProcessedUpdateRow).where(ProcessedUpdateRow.taken_at < utcnow() - KEEP)
            )
            await session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]
