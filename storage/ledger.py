"""The ledger of Telegram updates: what each one did, so that a redelivery (a webhook retry, a
restart between handling and confirming, a crash mid-way) has every effect once and still gets an
answer.

An update's handling commits zero or more units of work, its steps. Each step writes the
update's row (`steps` = how many have committed) in its own transaction, so the row and the
effect commit together or not at all. A redelivery whose steps an earlier delivery committed runs
the handler again to answer, but those steps roll back instead of committing again; the steps
after them (where the crash came) commit as usual. When the handling ends, the row says
`answered`, and any later delivery is ignored."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.model import utcnow
from storage.db import READ_ONLY
from storage.models import ProcessedUpdateRow

# Telegram keeps an unconfirmed update for at most a day; older entries can go.
KEEP = timedelta(days=2)


@dataclass
class Delivery:
    """One delivery of an update, while it is being handled."""

    bot_id: int
    update_id: int
    done: int  # steps an earlier delivery committed
    answered: bool  # an earlier delivery was handled to the end
    committed: int = 0  # steps this delivery has reached
    open: bool = True  # False once handled: later commits (of tasks it started) are no steps

    @property
    def seen(self) -> bool:
        return self.done > 0 or self.answered


_current: ContextVar[Delivery | None] = ContextVar("stagekeeper_delivery", default=None)


def current() -> Delivery | None:
    """The delivery whose handling runs in this context (tasks it started included)."""
    delivery = _current.get()
    return delivery if delivery is not None and delivery.open else None


async def record_step(session: AsyncSession, delivery: Delivery) -> bool:
    """Counts a unit of work about to commit in `session` as the delivery's next step, in the
    same transaction. False when that step committed before (in an earlier delivery, or in a
    concurrent one): the caller rolls it back."""
    delivery.committed += 1
    step = delivery.committed
    if step <= delivery.done:
        return False
    row = {"bot_id": delivery.bot_id, "update_id": delivery.update_id}
    if step == 1:
        session.add(ProcessedUpdateRow(**row, taken_at=utcnow(), steps=1, answered=False))
        try:
            await session.flush()
        except IntegrityError:  # another delivery of it committed meanwhile
            return False
        return True
    counted = await session.execute(
        update(ProcessedUpdateRow)
        .where(_key(delivery.bot_id, delivery.update_id), ProcessedUpdateRow.steps == step - 1)
        .values(steps=step)
    )
    return int(counted.rowcount) == 1  # type: ignore[attr-defined]


def _key(bot_id: int, update_id: int) -> ColumnElement[bool]:
    return and_(ProcessedUpdateRow.bot_id == bot_id, ProcessedUpdateRow.update_id == update_id)


class UpdateLedger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def open(self, bot_id: int, update_id: int) -> Delivery:
        """A new delivery of the update, knowing what earlier ones did; the units of work it
        commits while `handling` are its steps."""
        async with self._sessions() as session:
            connection = await session.connection(execution_options={READ_ONLY: True})
            row = (
                await connection.execute(
                    select(ProcessedUpdateRow.steps, ProcessedUpdateRow.answered).where(
                        _key(bot_id, update_id)
                    )
                )
            ).first()
        steps, answered = row if row is not None else (0, False)
        return Delivery(bot_id, update_id, done=steps, answered=answered)

    def handling(self, delivery: Delivery) -> _Handling:
        return _Handling(delivery)

    async def answered(self, delivery: Delivery) -> None:
        """The delivery's handling ended: later deliveries of the update are ignored."""
        mark = (
            update(ProcessedUpdateRow)
            .where(_key(delivery.bot_id, delivery.update_id))
            .values(answered=True)
        )
        async with self._sessions() as session:
            if delivery.committed or delivery.done:
                await session.execute(mark)
            else:
                session.add(
                    ProcessedUpdateRow(
                        bot_id=delivery.bot_id,
                        update_id=delivery.update_id,
                        taken_at=utcnow(),
                        steps=0,
                        answered=True,
                    )
                )
            try:
                await session.commit()
            except IntegrityError:  # a concurrent delivery of it wrote the row first
                await session.rollback()
                await session.execute(mark)
                await session.commit()

    async def forget_old(self) -> int:
        async with self._sessions() as session:
            result = await session.execute(
                delete(ProcessedUpdateRow).where(ProcessedUpdateRow.taken_at < utcnow() - KEEP)
            )
            await session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]


class _Handling:
    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    def __enter__(self) -> Delivery:
        self._token = _current.set(self._delivery)
        return self._delivery

    def __exit__(self, *exc: object) -> None:
        self._delivery.open = False
        _current.reset(self._token)
