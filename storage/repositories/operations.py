"""Operations (bulk moves, stage deletions, imports) and their undo."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import and_, delete, func, or_, select, union
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.model import Operation, OperationItem
from storage import bulk
from storage.models import ContactRow, OperationItemRow, OperationRow, ReportMoveRow, StageChangeRow
from storage.report_projection import ReportProjection
from storage.repositories.contacts import STAGE_INDEXES, SqlContactRepository
from storage.repositories.mapping import ITEM_COLUMNS, operation_from_row, operation_values


class SqlOperationRepository:
    def __init__(self, session: AsyncSession, projection: ReportProjection) -> None:
        self._session = session
        self._projection = projection

    async def add(self, operation: Operation) -> Operation:
        row = OperationRow(**operation_values(operation))
        self._session.add(row)
        await self._session.flush()
        operation.id = row.id
        return operation

    async def get(self, operation_id: int) -> Operation | None:
        row = await self._session.get(OperationRow, operation_id)
        return operation_from_row(row) if row else None

    async def recent(self, limit: int, *, actor_id: int | None = None) -> list[Operation]:
        query = select(OperationRow)
        if actor_id is not None:
            query = query.where(OperationRow.actor_id == actor_id)
        rows = await self._session.scalars(
            query.order_by(OperationRow.created_at.desc(), OperationRow.id.desc()).limit(limit)
        )
        return [operation_from_row(row) for row in rows]

    async def update(self, operation: Operation) -> None:
        await self._session.execute(
            sql_update(OperationRow)
            .where(OperationRow.id == operation.id)
            .values(**operation_values(operation))
        )

    async def forget(self, operation_id: int) -> None:
        await self._session.execute(delete(OperationRow).where(OperationRow.id == operation_id))

    async def add_items(self, items: list[OperationItem]) -> None:
        await bulk.insert(
            self._session,
            OperationItemRow,
            ITEM_COLUMNS,
            [
                (
                    item.operation_id,
                    item.contact_id,
                    item.before_stage_id,
                    item.before_stage_entered_at,
                    item.before_last_activity_at,
                    item.before_fields,
                    item.after_version,
                )
                for item in items
            ],
        )

    async def changed_since(self, operation_id: int) -> list[int]:
        item = OperationItemRow
        changed_items = (
            select(item.contact_id)
            .outerjoin(ContactRow, ContactRow.id == item.contact_id)
            .where(
                item.operation_id == operation_id,
                or_(ContactRow.id.is_(None), ContactRow.version != item.after_version),
            )
        )
        changed_created = select(ContactRow.id).where(
            ContactRow.created_by_operation_id == operation_id,
            ContactRow.version != CREATED_VERSION,
        )
        query = union(changed_items, changed_created).order_by("contact_id")
        return list(await self._session.scalars(query))

    async def revert(self, operation_id: int, *, by_user_id: int | None) -> int:
        item = OperationItemRow
        unchanged = (
            select(item.contact_id)
            .join(ContactRow, ContactRow.id == item.contact_id)
            .where(item.operation_id == operation_id, ContactRow.version == item.after_version)
        )
        # Every item restores a contact; those of bulk moves restore its report row too.
        items, moves = (
            await self._session.execute(
                select(func.count(), func.count(item.before_report_path)).where(
                    item.operation_id == operation_id
                )
            )
        ).one()
        rebuild = await bulk.worth_rebuilding(self._session, ContactRow, items)
        # Before the history rows go: bulk moves put their report rows back as they were.
        restored_reports = await self._projection.unmoved(
            operation_id,
            rebuild=await bulk.worth_rebuilding(self._session, ContactRow, moves),
        )
        undone_moves = and_(
            StageChangeRow.operation_id == operation_id,
            StageChangeRow.contact_id.in_(unchanged),
        )
        undone_ids = select(StageChangeRow.id).where(undone_moves)
        await self._projection.forget_history(ReportMoveRow.change_id.in_(undone_ids))
        await self._session.execute(delete(StageChangeRow).where(undone_moves))
        await self._restore_profiles(operation_id)
        # Their history rows and tags go with them (ON DELETE CASCADE). Unchanged since the
        # import, they have only the history row that created them, which ends no stay.
        created = and_(
            ContactRow.created_by_operation_id == operation_id,
            ContactRow.version == CREATED_VERSION,
        )
        removed = await self._session.execute(delete(ContactRow).where(created))
        async with bulk.indexes_rebuilt(self._session, STAGE_INDEXES if rebuild else ()):
            restored = await self._session.execute(
                sql_update(ContactRow)
                .where(
                    ContactRow.id == item.contact_id,
                    item.operation_id == operation_id,
                    ContactRow.version == item.after_version,
                )
                .values(
                    stage_id=item.before_stage_id,
                    stage_entered_at=item.before_stage_entered_at,
                    last_activity_at=item.before_last_activity_at,
                    version=ContactRow.version + 1,
                    updated_by_id=by_user_id,
                )
                .execution_options(synchronize_session=False)
            )
        reverted = await self._session.scalars(
            select(OperationItemRow.contact_id).where(OperationItemRow.operation_id == operation_id)
        )
        self._projection.touched(i for i in reverted if i not in restored_reports)
        return int(removed.rowcount) + int(restored.rowcount)  # type: ignore[attr-defined]

    async def _restore_profiles(self, operation_id: int) -> None:
        """Fields an import changed, put back one contact at a time (imports carry them; stage
        moves have none)."""
        rows = await self._session.execute(
            select(OperationItemRow.contact_id, OperationItemRow.before_fields)
            .join(ContactRow, ContactRow.id == OperationItemRow.contact_id)
            .where(
                OperationItemRow.operation_id == operation_id,
                OperationItemRow.before_fields.is_not(None),
                ContactRow.version == OperationItemRow.after_version,
            )
        )
        contacts = SqlContactRepository(self._session, self._projection)
        for contact_id, before in rows.all():
            await self._session.execute(
                sql_update(ContactRow)
                .where(ContactRow.id == contact_id)
                .values(
                    **{name: before[name] for name in PROFILE_COLUMNS},
                    value=Decimal(before["value"]) if before["value"] is not None else None,
                    custom_fields=before["custom_fields"],
                )
            )
            await contacts.set_tags(contact_id, before["tags"])
            await contacts.refresh_search_text(contact_id)


PROFILE_COLUMNS = ("name", "phone", "email", "external_id", "source", "owner_id", "company_id")
# A contact is first written at version 1 (domain.model.Contact); every later write raises it.
CREATED_VERSION = 1
