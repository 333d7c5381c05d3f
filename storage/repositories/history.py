"""A contact's timeline: its stage changes and activities."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.model import Activity, ActivityKind, StageChange
from storage import bulk
from storage.models import ActivityRow, StageChangeRow
from storage.report_projection import ReportProjection
from storage.repositories.ids import next_ids
from storage.repositories.mapping import (
    HISTORY_COLUMNS,
    activity_from_row,
    change_from_row,
    change_values,
)

# Built once, as the other statements of a card: building a statement costs about as much CPU
# as SQLite takes to run it.
_CHANGES_OF_CONTACT = (
    select(StageChangeRow)
    .where(StageChangeRow.contact_id == bindparam("contact_id"))
    .order_by(StageChangeRow.at, StageChangeRow.id)
)
_ACTIVITIES_OF_CONTACT = (
    select(ActivityRow)
    .where(
        ActivityRow.contact_id == bindparam("contact_id"),
        ActivityRow.kind.in_(bindparam("kinds", expanding=True)),
    )
    .order_by(ActivityRow.at.desc(), ActivityRow.id.desc())
)


class SqlHistoryRepository:
    def __init__(self, session: AsyncSession, projection: ReportProjection) -> None:
        self._session = session
        self._projection = projection
        self._given_up_to = 0  # the largest id new_ids gave out

    async def add(self, change: StageChange) -> None:
        await self._session.execute(insert(StageChangeRow).values(change_values(change)))
        self._projection.touched([change.contact_id])

    async def add_many(self, changes: list[StageChange]) -> None:
        without = [change for change in changes if change.id is None]
        if without:
            ids = iter(await self.new_ids(len(without)))
            # Positional, not dataclasses.replace: a third of the time, a million times.
            changes = [
                change
                if change.id is not None
                else StageChange(
                    change.contact_id,
                    change.from_stage_id,
                    change.to_stage_id,
                    change.at,
                    change.by_user_id,
                    change.source,
                    change.reason,
                    change.operation_id,
                    next(ids),
                )
                for change in changes
            ]
        rows = [
            (
                change.id,
                change.contact_id,
                change.from_stage_id,
                change.to_stage_id,
                change.at,
                change.by_user_id,
                change.source.value,
                change.reason,
                change.operation_id,
            )
            for change in changes
        ]
        await bulk.insert(self._session, StageChangeRow, ("id", *HISTORY_COLUMNS), rows)
        await self._projection.appended(changes)

    async def new_ids(self, count: int) -> list[int]:
        # After those given out before, which may not be inserted yet.
        ids = await next_ids(self._session, StageChangeRow, count, after=self._given_up_to)
        if ids:
            self._given_up_to = ids[-1]
        return ids

    async def latest_times(self, contact_ids: Collection[int]) -> dict[int, datetime]:
        # At the driver's level (an import asks for thousands of contacts a batch, and
        # SQLAlchemy's work for each parameter of an IN list costs more than the query).
        rows = await bulk.select_text(
            self._session,
            "SELECT contact_id, max(at) FROM stage_changes WHERE contact_id IN ",
            sorted(contact_ids),
            tail=" GROUP BY contact_id",
            types=(None, StageChangeRow.__table__.c.at.type),
        )
        return dict(rows)

    async def for_contact(self, contact_id: int) -> list[StageChange]:
        rows = await self._session.scalars(_CHANGES_OF_CONTACT, {"contact_id": contact_id})
        return [change_from_row(row) for row in rows]

    async def latest(self, contact_id: int) -> StageChange | None:
        row = await self._session.scalar(
            select(StageChangeRow)
            .where(StageChangeRow.contact_id == contact_id)
            .order_by(StageChangeRow.at.desc(), StageChangeRow.id.desc())
            .limit(1)
        )
        return change_from_row(row) if row else None


class SqlActivityRepository:
    def __init__(self, session: AsyncSession, projection: ReportProjection) -> None:
        self._session = session
        self._projection = projection

    async def add(self, activity: Activity) -> Activity:
        row = ActivityRow(
            contact_id=activity.contact_id,
            kind=activity.kind.value,
            text=activity.text,
            at=activity.at,
            by_user_id=activity.by_user_id,
            due_at=activity.due_at,
            done_at=activity.done_at,
            reminded_at=activity.reminded_at,
        )
        self._session.add(row)
        await self._session.flush()
        activity.id = row.id
        self._projection.touched([activity.contact_id])
        return activity

    async def for_contact(
        self, contact_id: int, kinds: Sequence[ActivityKind] | None = None
    ) -> list[Activity]:
        values = [kind.value for kind in (ActivityKind if kinds is None else kinds)]
        rows = await self._session.scalars(
            _ACTIVITIES_OF_CONTACT, {"contact_id": contact_id, "kinds": values}
        )
        return [activity_from_row(row) for row in rows]

    async def claim_due_tasks(self, now: datetime, limit: int) -> list[Activity]:
        due = (
            select(ActivityRow.id)
            .where(
                ActivityRow.kind == ActivityKind.TASK.value,
                ActivityRow.due_at <= now,
                ActivityRow.done_at.is_(None),
                ActivityRow.reminded_at.is_(None),
            )
            .order_by(ActivityRow.due_at)
            .limit(limit)
        )
        ids = list(await self._session.scalars(due))
        if not ids:
            return []
        claimed = await self._session.scalars(
            sql_update(ActivityRow)
            .where(ActivityRow.id.in_(ids), ActivityRow.reminded_at.is_(None))
            .values(reminded_at=now)
            .returning(ActivityRow.id)
        )
        taken = set(claimed)
        rows = await self._session.scalars(select(ActivityRow).where(ActivityRow.id.in_(taken)))
        return [activity_from_row(row) for row in rows]
