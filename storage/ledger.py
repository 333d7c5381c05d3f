"""The ledger of Telegram updates: what each one did, so that a redelivery (a webhook retry, a
restart between handling and confirming, a crash mid-way) has every effect once and still gets an
answer.

An update's handling commits zero or more units of work, its steps. Each step writes the
update's row (`steps` = how many have committed) in its own transaction, so the row and the
effect commit together or not at all. A redelivery runs the handler again, so that the person is
answered; the steps an earlier delivery committed roll back instead of committing again, and the
steps after them (where the crash came) commit as usual.

The ledger costs nothing until an update's first step: that step's insert of the row is what
tells a redelivery from a first delivery. An update that changes nothing leaves no row; a
redelivery of it is simply answered again."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.model import utcnow
from storage.models import ProcessedUpdateRow

log = logging.getLogger(__name__)

# Telegram keeps an unconfirmed update for at most a day; older entries can go.
KEEP = timedelta(days=2)


@dataclass
class Delivery:
    """One delivery of an update, while it is being handled."""

    bot_id: int
    update_id: int
    done: int | None = None  # steps an earlier delivery committed; None until the first step
    committed: int = 0  # steps this delivery has reached
    open: bool = True  # False once handled: later commits (of tasks it started) are no steps


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
    if delivery.done is None:
        if await _first_row(session, delivery):
            delivery.done = 0
            return True
        delivery.done = await _steps_done(session, delivery)
        log.info(
            "update %s delivered again after %d step(s) committed; answering",
            delivery.update_id,
            delivery.done,
        )
    if step <= delivery.done:
        return False
    counted = await session.execute(
        update(ProcessedUpdateRow)
        .where(_key(delivery.bot_id, delivery.update_id), ProcessedUpdateRow.steps == step - 1)
        .values(steps=step)
    )
    return int(counted.rowcount) == 1  # type: ignore[attr-defined]


async def _first_row(session: AsyncSession, delivery: Delivery) -> bool:
    """Writes the update's row with its first step; False if an earlier delivery wrote it
    (waiting, on PostgreSQL, for a concurrent one to commit or roll back)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    written = await session.execute(
        insert(ProcessedUpdateRow)
        .values(bot_id=delivery.bot_id, update_id=delivery.update_id, taken_at=utcnow(), steps=1)
        .on_conflict_do_nothing()
    )
    return int(written.rowcount) == 1  # type: ignore[attr-defined]


async def _steps_done(session: AsyncSession, delivery: Delivery) -> int:
    steps = await session.scalar(
        select(ProcessedUpdateRow.steps).where(_key(delivery.bot_id, delivery.update_id))
    )
    return int(steps or 0)


def _key(bot_id: int, update_id: int) -> ColumnElement[bool]:
    return and_(ProcessedUpdateRow.bot_id == bot_id, ProcessedUpdateRow.update_id == update_id)


class UpdateLedger:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def handling(self, bot_id: int, update_id: int) -> _Handling:
        """A delivery of the update: the units of work committed in this context are its
        steps."""
        return _Handling(Delivery(bot_id, update_id))

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
