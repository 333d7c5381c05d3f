"""Automation: received events, rules, round-robin turns and lead notices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.model import EventKind, Notice, ReceivedEvent
from domain.ports import DuplicateEvent
from storage import bulk
from storage.models import AssignmentTurnRow, AutomationRuleRow, EventRow, NoticeRow
from storage.repositories.ids import ID_CHUNK
from storage.repositories.mapping import EVENT_COLUMNS, EVENT_IDENTITY, event_from_row, identity_of

# Built once: a card reads it.
_EVENTS_OF_CONTACT = (
    select(EventRow)
    .where(EventRow.contact_id == bindparam("contact_id"))
    .order_by(EventRow.id.desc())
    .limit(bindparam("limit"))
)


class SqlEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_many(self, events: list[ReceivedEvent]) -> None:
        rows = [
            (
                event.kind.value,
                event.contact_id,
                event.received_at,
                event.via,
                event.idempotency_key,
                event.fingerprint,
                event.source,
                event.value,
                event.outcome.value,
                event.created_contact,
                event.from_stage_id,
                event.to_stage_id,
                event.detail,
            )
            for event in events
        ]
        try:
            inserted = await bulk.insert(
                self._session, EventRow, EVENT_COLUMNS, rows, returning=("id", *EVENT_IDENTITY)
            )
        except IntegrityError:
            # Only an idempotency key can clash; the whole unit of work is then tried again.
            raise DuplicateEvent("an idempotency key was taken meanwhile") from None
        # Rows come back in no promised order: each event is found by what it stored. Events
        # alike in all of that are alike in everything stored, so either id serves either.
        ids: dict[tuple[Any, ...], list[int]] = {}
        for event_id, *identity in inserted:
            ids.setdefault(tuple(identity), []).append(event_id)
        for event in events:
            event.id = ids[identity_of(event)].pop()

    async def by_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], ReceivedEvent]:
        if not keys:
            return {}
        rows = await self._session.scalars(
            select(EventRow).where(
                EventRow.via.in_({via for via, _ in keys}),
                EventRow.idempotency_key.in_({key for _, key in keys}),
            )
        )
        found = (event_from_row(row) for row in rows)
        return {
            (event.via, event.idempotency_key): event
            for event in found
            if event.idempotency_key is not None and (event.via, event.idempotency_key) in keys
        }

    async def counts(self, contact_ids: set[int], kind: EventKind) -> dict[int, int]:
        if not contact_ids:
            return {}
        rows = await self._session.execute(
            select(EventRow.contact_id, func.count())
            .where(EventRow.contact_id.in_(contact_ids), EventRow.kind == kind.value)
            .group_by(EventRow.contact_id)
        )
        return dict(rows.all())

    async def for_contact(self, contact_id: int, *, limit: int) -> list[ReceivedEvent]:
        rows = await self._session.scalars(
            _EVENTS_OF_CONTACT, {"contact_id": contact_id, "limit": limit}
        )
        return [event_from_row(row) for row in rows]


class SqlRuleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def chosen(self) -> dict[str, int | None]:
        rows = await self._session.execute(
            select(AutomationRuleRow.trigger, AutomationRuleRow.stage_id)
        )
        return dict(rows.all())

    async def choose(self, trigger: str, stage_id: int | None) -> None:
        await self.reset(trigger)
        self._session.add(AutomationRuleRow(trigger=trigger, stage_id=stage_id))
        await self._session.flush()

    async def reset(self, trigger: str) -> None:
        await self._session.execute(
            delete(AutomationRuleRow).where(AutomationRuleRow.trigger == trigger)
        )


class SqlTurnRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def last(self, queue: str) -> int | None:
        locked = (
            select(AssignmentTurnRow.last_user_id)
            .where(AssignmentTurnRow.queue == queue)
            .with_for_update()
        )
        found = (await self._session.execute(locked)).first()
        if found is not None:
            last: int | None = found[0]
            return last
        # A queue's first lead: the row must exist to be locked. A concurrent first insert
        # waits for the other one's commit, then does nothing, and both lock the same row.
        insert_row = _insert_ignoring_conflict(self._session, AssignmentTurnRow, ["queue"])
        await self._session.execute(insert_row.values(queue=queue, last_user_id=None))
        return await self._session.scalar(locked)

    async def record(self, queue: str, user_id: int) -> None:
        await self._session.execute(
            sql_update(AssignmentTurnRow)
            .where(AssignmentTurnRow.queue == queue)
            .values(last_user_id=user_id)
        )


class SqlNoticeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_many(self, notices: list[Notice]) -> None:
        rows = [(n.user_id, n.contact_id, n.created_at, n.sent_at) for n in notices]
        inserted = await bulk.insert(
            self._session,
            NoticeRow,
            ("user_id", "contact_id", "created_at", "sent_at"),
            rows,
            returning=("id", "user_id", "contact_id"),
        )
        ids = {(user_id, contact_id): notice_id for notice_id, user_id, contact_id in inserted}
        for notice in notices:  # one notice per person and new contact
            notice.id = ids[(notice.user_id, notice.contact_id)]

    async def pending(self, limit: int) -> list[Notice]:
        rows = await self._session.scalars(
            select(NoticeRow).where(NoticeRow.sent_at.is_(None)).order_by(NoticeRow.id).limit(limit)
        )
        return [Notice(r.id, r.user_id, r.contact_id, r.created_at, r.sent_at) for r in rows]

    async def mark_sent(self, notice_ids: list[int], at: datetime) -> None:
        for start in range(0, len(notice_ids), ID_CHUNK):
            await self._session.execute(
                sql_update(NoticeRow)
                .where(NoticeRow.id.in_(notice_ids[start : start + ID_CHUNK]))
                .values(sent_at=at)
            )


def _insert_ignoring_conflict(
    session: AsyncSession, model: type[Any], index_elements: list[str]
) -> Any:
    """INSERT … ON CONFLICT DO NOTHING, which SQLite and PostgreSQL spell alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(model).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite_insert(model).on_conflict_do_nothing(index_elements=index_elements)
