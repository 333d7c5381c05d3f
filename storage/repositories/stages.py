"""Stages."""

from __future__ import annotations

from copy import copy

from sqlalchemy import func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DuplicateStageName
from domain.model import Stage, utcnow
from storage.models import ContactRow, StageRow
from storage.report_projection import ReportProjection
from storage.repositories.mapping import stage_from_row, stage_values

_STAGES = select(StageRow).order_by(StageRow.position, StageRow.id)


class SqlStageRepository:
    def __init__(self, session: AsyncSession, projection: ReportProjection) -> None:
        self._session = session
        self._projection = projection
        # Every stage, read once per unit of work until it writes one: a card names stages in
        # its details and in its timeline, and a move checks its rules against them too.
        self._read: list[Stage] | None = None

    async def list(self, *, include_archived: bool = False) -> list[Stage]:
        if self._read is None:
            self._read = [stage_from_row(row) for row in await self._session.scalars(_STAGES)]
            self._projection.stages_read(self._read)
        # Copies: a use case changes a stage before it saves it, or refuses to.
        return [copy(s) for s in self._read if include_archived or s.archived_at is None]

    async def get(self, stage_id: int) -> Stage | None:
        row = await self._session.get(StageRow, stage_id)
        return stage_from_row(row) if row else None

    async def add(self, stage: Stage) -> Stage:
        row = StageRow(**stage_values(stage), created_at=utcnow())
        self._session.add(row)
        self._read = None
        await self._flush_name(stage.name)
        self._projection.stages_changed()
        stage.id = row.id
        return stage

    async def update(self, stage: Stage) -> None:
        assert stage.id is not None
        category = await self._session.scalar(
            select(StageRow.category).where(StageRow.id == stage.id)
        )
        await self._session.execute(
            sql_update(StageRow).where(StageRow.id == stage.id).values(stage_values(stage))
        )
        self._read = None
        await self._flush_name(stage.name)
        self._projection.stages_changed()
        if category != stage.category.value:
            await self._projection.recategorized(stage.id)

    async def contact_counts(self) -> dict[int | None, int]:
        rows = await self._session.execute(
            select(ContactRow.stage_id, func.count()).group_by(ContactRow.stage_id)
        )
        return dict(rows.all())

    async def _flush_name(self, name: str) -> None:
        # The unique index is the last word on names when two admins add the same one at once.
        try:
            async with self._session.begin_nested():
                await self._session.flush()
        except IntegrityError:
            raise DuplicateStageName(name) from None
