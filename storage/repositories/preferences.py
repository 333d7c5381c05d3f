"""People's preferences: saved views, custom field definitions and digest settings."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import delete, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.model import CustomFieldDef, DigestSection, DigestSettings, FieldKind, SavedView
from storage.models import CustomFieldRow, DeliveryRow, DigestSettingsRow, SavedViewRow
from storage.repositories.mapping import view_from_row


class SqlViewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, view: SavedView) -> SavedView:
        row = SavedViewRow(
            owner_id=view.owner_id,
            name=view.name,
            filter=view.filter,
            shared=view.shared,
            created_at=view.created_at,
        )
        self._session.add(row)
        await self._session.flush()
        view.id = row.id
        return view

    async def get(self, view_id: int) -> SavedView | None:
        row = await self._session.get(SavedViewRow, view_id)
        return view_from_row(row) if row else None

    async def visible_to(self, user_id: int | None) -> list[SavedView]:
        query = select(SavedViewRow).order_by(SavedViewRow.name, SavedViewRow.id)
        if user_id is not None:
            query = query.where(
                or_(SavedViewRow.shared.is_(True), SavedViewRow.owner_id == user_id)
            )
        rows = await self._session.scalars(query)
        return [view_from_row(row) for row in rows]

    async def delete(self, view_id: int) -> None:
        await self._session.execute(delete(SavedViewRow).where(SavedViewRow.id == view_id))


class SqlFieldRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self) -> list[CustomFieldDef]:
        rows = await self._session.scalars(select(CustomFieldRow).order_by(CustomFieldRow.id))
        return [
            CustomFieldDef(row.id, row.key, row.name, FieldKind(row.kind), list(row.choices))
            for row in rows
        ]

    async def add(self, field: CustomFieldDef) -> CustomFieldDef:
        row = CustomFieldRow(
            key=field.key, name=field.name, kind=field.kind.value, choices=list(field.choices)
        )
        self._session.add(row)
        await self._session.flush()
        field.id = row.id
        return field

    async def delete(self, field_id: int) -> None:
        await self._session.execute(delete(CustomFieldRow).where(CustomFieldRow.id == field_id))


class SqlDigestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def settings(self) -> dict[int, DigestSettings]:
        rows = await self._session.scalars(select(DigestSettingsRow))
        return {
            row.user_id: DigestSettings(
                row.user_id,
                enabled=row.enabled,
                send_at=time.fromisoformat(row.send_at),
                timezone=row.timezone,
                sections=frozenset(
                    DigestSection(s) for s in row.sections if s in set(DigestSection)
                ),
                blocked_at=row.blocked_at,
            )
            for row in rows
        }

    async def save(self, settings: DigestSettings) -> None:
        row = DigestSettingsRow(
            user_id=settings.user_id,
            enabled=settings.enabled,
            send_at=settings.send_at.strftime("%H:%M"),
            timezone=settings.timezone,
            sections=sorted(settings.sections),
            blocked_at=settings.blocked_at,
        )
        await self._session.merge(row)
        await self._session.flush()

    async def unpause(self, user_id: int) -> bool:
        # Read first: this runs for every message and tap, and almost always finds nothing to
        # write, so it should not ask for a write where a read tells.
        paused = await self._session.scalar(
            select(DigestSettingsRow.blocked_at).where(DigestSettingsRow.user_id == user_id)
        )
        if paused is None:
            return False
        await self._session.execute(
            sql_update(DigestSettingsRow)
            .where(DigestSettingsRow.user_id == user_id)
            .values(blocked_at=None)
        )
        return True

    async def claim(self, user_id: int, day: date, kind: str, at: datetime) -> bool:
        dialect = self._session.get_bind().dialect.name
        insert_row = postgresql_insert if dialect == "postgresql" else sqlite_insert
        result = await self._session.execute(
            insert_row(DeliveryRow)
            .values(user_id=user_id, day=day, kind=kind, claimed_at=at)
            .on_conflict_do_nothing()
        )
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    async def unclaim(self, user_id: int, day: date, kind: str) -> None:
        await self._session.execute(
            delete(DeliveryRow).where(
                DeliveryRow.user_id == user_id,
                DeliveryRow.day == day,
                DeliveryRow.kind == kind,
                DeliveryRow.sent_at.is_(None),
            )
        )

    async def mark_sent(self, user_id: int, day: date, kind: str, at: datetime) -> None:
        await self._session.execute(
            sql_update(DeliveryRow)
            .where(DeliveryRow.user_id == user_id, DeliveryRow.day == day, DeliveryRow.kind == kind)
            .values(sent_at=at)
        )

    async def claimed(self, day: date, kind: str) -> set[int]:
        rows = await self._session.scalars(
            select(DeliveryRow.user_id).where(DeliveryRow.day == day, DeliveryRow.kind == kind)
        )
        return set(rows)
