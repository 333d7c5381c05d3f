"""Repositories: map rows to domain entities. They flush but never commit."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Scope
from domain.errors import DuplicateContact, DuplicateStageName
from domain.model import (
    AccessRequest,
    Activity,
    ActivityKind,
    Category,
    Company,
    Contact,
    Operation,
    OperationItem,
    RequestStatus,
    Role,
    SavedView,
    Source,
    Stage,
    StageChange,
    User,
    utcnow,
)
from domain.ports import BulkMove, ContactFilter, SearchCriteria
from domain.services.contacts import duplicate_of
from domain.text import clean_name, fold
from storage.models import (
    AccessRequestRow,
    ActivityRow,
    CompanyRow,
    ContactRow,
    ContactTagRow,
    OperationItemRow,
    OperationRow,
    SavedViewRow,
    StageChangeRow,
    StageRow,
    TagRow,
    UserRow,
)
from storage.reports import refresh as refresh_reports

# SQLite's FTS5 index of contacts.search_text (created by the migrations, kept by triggers).
CONTACT_SEARCH = table("contact_search", column("rowid", Integer))


class SqlStageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self, *, include_archived: bool = False) -> list[Stage]:
        query = select(StageRow).order_by(StageRow.position, StageRow.id)
        if not include_archived:
            query = query.where(StageRow.archived_at.is_(None))
        return [_stage(row) for row in await self._session.scalars(query)]

    async def get(self, stage_id: int) -> Stage | None:
        row = await self._session.get(StageRow, stage_id)
        return _stage(row) if row else None

    async def add(self, stage: Stage) -> Stage:
        row = StageRow(
            name=stage.name,
            name_key=fold(stage.name),
            category=stage.category.value,
            position=stage.position,
            archived_at=stage.archived_at,
            created_at=utcnow(),
        )
        self._session.add(row)
        await self._flush_name(stage.name)
        stage.id = row.id
        return stage

    async def update(self, stage: Stage) -> None:
        assert stage.id is not None
        await self._session.execute(
            sql_update(StageRow)
            .where(StageRow.id == stage.id)
            .values(
                name=stage.name,
                name_key=fold(stage.name),
                category=stage.category.value,
                position=stage.position,
                archived_at=stage.archived_at,
            )
        )
        await self._flush_name(stage.name)

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


class SqlContactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, contact_id: int) -> Contact | None:
        row = await self._session.get(ContactRow, contact_id, populate_existing=True)
        if row is None:
            return None
        tags = await self._tags({contact_id})
        return _contact(row, tags.get(contact_id, []))

    async def find_by_identifiers(
        self, *, phone: str | None, email: str | None, external_id: str | None
    ) -> list[Contact]:
        conditions: list[ColumnElement[bool]] = []
        if phone:
            conditions.append(ContactRow.phone == phone)
        if email:
            conditions.append(ContactRow.email == email)
        if external_id:
            conditions.append(ContactRow.external_id == external_id)
        if not conditions:
            return []
        return await self._load(select(ContactRow).where(or_(*conditions)).order_by(ContactRow.id))

    async def add(self, contact: Contact, company_name: str | None) -> Contact:
        company_id = await self._company_id(company_name) if company_name else None
        contact.company_id = company_id
        row = ContactRow(
            **_contact_values(contact), search_text=_search_text(contact, company_name)
        )
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError:
            await self._raise_duplicate(contact)
            raise
        contact.id = row.id
        await self.set_tags(row.id, contact.tags)
        await refresh_reports(self._session, [row.id])
        return contact

    async def update(self, contact: Contact, *, expected_version: int) -> bool:
        assert contact.id is not None
        company = (
            await self._session.get(CompanyRow, contact.company_id) if contact.company_id else None
        )
        result = await self._session.execute(
            sql_update(ContactRow)
            .where(ContactRow.id == contact.id, ContactRow.version == expected_version)
            .values(
                **_contact_values(contact),
                search_text=_search_text(contact, company.name if company else None),
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await self.set_tags(contact.id, contact.tags)
        await refresh_reports(self._session, [contact.id])
        return True

    async def search(
        self, criteria: SearchCriteria, scope: Scope, *, limit: int, offset: int
    ) -> list[Contact]:
        """Exact identifier matches first, then name/company matches, newest first. Each part
        stops after limit + offset rows, so a common name costs no more than a rare one."""
        wanted = limit + offset
        exact: list[ColumnElement[bool]] = []
        if criteria.phone:
            exact.append(ContactRow.phone == criteria.phone)
        if criteria.email:
            exact.append(ContactRow.email == criteria.email)
        if criteria.external_id:
            exact.append(ContactRow.external_id == criteria.external_id)
        rows: dict[int, ContactRow] = {}
        if exact:
            query = select(ContactRow).where(or_(*exact), _scope_filter(scope))
            for row in await self._session.scalars(query.order_by(ContactRow.id.desc())):
                rows[row.id] = row
        if criteria.words and len(rows) < wanted:
            query = self._word_match(criteria.words).where(_scope_filter(scope))
            for row in await self._session.scalars(query.limit(wanted)):
                rows.setdefault(row.id, row)
        page = list(rows.values())[offset:wanted]
        tags = await self._tags({row.id for row in page})
        return [_contact(row, tags.get(row.id, [])) for row in page]

    async def listing(
        self, where: ContactFilter, scope: Scope, *, limit: int, offset: int = 0
    ) -> list[Contact]:
        query = select(ContactRow).where(*self._matching(where, scope))
        if where.idle_since is not None:
            query = query.order_by(ContactRow.last_activity_at)
        query = query.order_by(ContactRow.id.desc()).limit(limit).offset(offset)
        return await self._load(query)

    async def batch_after(
        self, where: ContactFilter, scope: Scope, *, after_id: int, limit: int
    ) -> list[Contact]:
        query = (
            select(ContactRow)
            .where(ContactRow.id > after_id, *self._matching(where, scope))
            .order_by(ContactRow.id)
            .limit(limit)
        )
        return await self._load(query)

    async def custom_field_keys(self, where: ContactFilter, scope: Scope) -> set[str]:
        """One DISTINCT over the JSON keys, done by the database (json_object_keys on
        PostgreSQL, json_each on SQLite)."""
        matching = self._matching(where, scope)
        if self._session.get_bind().dialect.name == "postgresql":
            keys: Select[Any] = (
                select(func.json_object_keys(ContactRow.custom_fields))
                .where(func.json_typeof(ContactRow.custom_fields) == "object", *matching)
                .distinct()
            )
        else:
            pairs = func.json_each(ContactRow.custom_fields).table_valued("key").alias("pairs")
            keys = (
                select(pairs.c.key)
                .select_from(ContactRow)
                .join(pairs, literal(True))
                .where(pairs.c.key.is_not(None), *matching)
                .distinct()
            )
        return {str(key) for key in await self._session.scalars(keys)}

    @staticmethod
    def _matching(where: ContactFilter, scope: Scope) -> list[ColumnElement[bool]]:
        conditions = [_scope_filter(scope)]
        if where.owner_id is not None:
            conditions.append(ContactRow.owner_id == where.owner_id)
        if where.stage_ids is not None:
            in_stages = ContactRow.stage_id.in_(where.stage_ids)
            conditions.append(
                or_(in_stages, ContactRow.stage_id.is_(None)) if where.without_stage else in_stages
            )
        elif where.without_stage:
            conditions.append(ContactRow.stage_id.is_(None))
        if where.source is not None:
            conditions.append(func.lower(ContactRow.source) == where.source.lower())
        if where.tag is not None:
            tagged = (
                select(ContactTagRow.contact_id)
                .join(TagRow, TagRow.id == ContactTagRow.tag_id)
                .where(TagRow.name_key == fold(where.tag))
            )
            conditions.append(ContactRow.id.in_(tagged))
        if where.created_from is not None:
            conditions.append(ContactRow.created_at >= where.created_from)
        if where.created_before is not None:
            conditions.append(ContactRow.created_at < where.created_before)
        for key, value in where.fields:
            conditions.append(ContactRow.custom_fields[key].as_string() == value)
        if where.company_id is not None:
            conditions.append(ContactRow.company_id == where.company_id)
        if where.idle_since is not None:
            conditions.append(ContactRow.last_activity_at < where.idle_since)
        return conditions

    async def find_many(
        self, *, phones: list[str], emails: list[str], external_ids: list[str]
    ) -> list[Contact]:
        found: dict[int, Contact] = {}
        for identifier, values in (
            (ContactRow.phone, phones),
            (ContactRow.email, emails),
            (ContactRow.external_id, external_ids),
        ):
            for start in range(0, len(values), ID_CHUNK):
                chunk = values[start : start + ID_CHUNK]
                query = select(ContactRow).where(identifier.in_(chunk))
                for contact in await self._load(query):
                    assert contact.id is not None
                    found[contact.id] = contact
        return list(found.values())

    async def company_id(self, name: str) -> int:
        return await self._company_id(name)

    async def add_many(self, contacts: list[tuple[Contact, str | None]]) -> None:
        companies = {fold(name): name for _, name in contacts if name}
        company_ids = {key: await self._company_id(name) for key, name in companies.items()}
        rows = []
        for contact, company in contacts:
            contact.company_id = company_ids[fold(company)] if company else None
            rows.append({**_contact_values(contact), "search_text": _search_text(contact, company)})
        try:
            async with self._session.begin_nested():
                result = await self._session.execute(
                    insert(ContactRow).returning(ContactRow.id, sort_by_parameter_order=True), rows
                )
        except IntegrityError:
            raise DuplicateContact(0, "identifier", "in this batch") from None
        ids = result.scalars().all()
        for (contact, _), contact_id in zip(contacts, ids, strict=True):
            contact.id = contact_id
        tag_ids: dict[str, int] = {}
        links = []
        for contact, _ in contacts:
            for tag in contact.tags:
                key = fold(tag)
                if key not in tag_ids:
                    tag_ids[key] = await self._tag_id(tag)
                links.append({"contact_id": contact.id, "tag_id": tag_ids[key]})
        if links:
            await self._session.execute(insert(ContactTagRow), links)
        await refresh_reports(self._session, ids)

    async def count_in_stage(self, stage_id: int) -> int:
        count = await self._session.scalar(
            select(func.count()).select_from(ContactRow).where(ContactRow.stage_id == stage_id)
        )
        return count or 0

    async def move_stage_contents(self, move: BulkMove) -> int:
        """Set-based, however many contacts: the before-images for undo, the history rows, then
        the contacts. Explicit contact ids go in chunks to stay within parameter limits."""
        if move.contact_ids is None:
            return await self._move_where(move, _in_stage(move.from_stage_id))
        moved = 0
        ids = list(move.contact_ids)
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            where = and_(_in_stage(move.from_stage_id), ContactRow.id.in_(chunk))
            moved += await self._move_where(move, where)
        return moved

    async def _move_where(self, move: BulkMove, where: ColumnElement[bool]) -> int:
        moving = list(await self._session.scalars(select(ContactRow.id).where(where)))
        if move.operation_id is not None:
            before = select(
                literal(move.operation_id),
                ContactRow.id,
                literal(False),
                ContactRow.stage_id,
                ContactRow.stage_entered_at,
                ContactRow.last_activity_at,
                ContactRow.version + 1,
            ).where(where)
            await self._session.execute(
                insert(OperationItemRow).from_select(
                    [
                        "operation_id",
                        "contact_id",
                        "created",
                        "before_stage_id",
                        "before_stage_entered_at",
                        "before_last_activity_at",
                        "after_version",
                    ],
                    before,
                )
            )
        history = select(
            ContactRow.id,
            ContactRow.stage_id,
            literal(move.to_stage_id),
            literal(move.at, StageChangeRow.at.type),
            literal(move.by_user_id),
            literal(move.source.value),
            literal(move.reason),
            literal(move.operation_id),
        ).where(where)
        await self._session.execute(
            insert(StageChangeRow).from_select(
                [
                    "contact_id",
                    "from_stage_id",
                    "to_stage_id",
                    "at",
                    "by_user_id",
                    "source",
                    "reason",
                    "operation_id",
                ],
                history,
            )
        )
        result = await self._session.execute(
            sql_update(ContactRow)
            .where(where)
            .values(
                stage_id=move.to_stage_id,
                stage_entered_at=move.at,
                last_activity_at=move.at,
                version=ContactRow.version + 1,
                updated_by_id=move.by_user_id,
            )
            .execution_options(synchronize_session=False)
        )
        await refresh_reports(self._session, moving)
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _word_match(self, words: Sequence[str]) -> Select[Any]:
        """Contacts whose name or company has a word starting with each query word, newest
        first in the index's own order (no sort of all matches)."""
        if self._session.get_bind().dialect.name == "postgresql":
            simple: ColumnElement[Any] = literal_column("'simple'::regconfig")
            query = " & ".join(f"{word}:*" for word in words)
            vector = func.to_tsvector(simple, ContactRow.search_text)
            return (
                select(ContactRow)
                .where(vector.op("@@")(func.to_tsquery(simple, query)))
                .order_by(ContactRow.id.desc())
            )
        fts_query = " ".join(f'"{word}"*' for word in words)
        return (
            select(ContactRow)
            .join(CONTACT_SEARCH, CONTACT_SEARCH.c.rowid == ContactRow.id)
            .where(text("contact_search MATCH :fts").bindparams(fts=fts_query))
            .order_by(CONTACT_SEARCH.c.rowid.desc())
        )

    async def _load(self, query: Select[Any]) -> list[Contact]:
        rows = list(await self._session.scalars(query))
        tags = await self._tags({row.id for row in rows})
        return [_contact(row, tags.get(row.id, [])) for row in rows]

    async def _tags(self, contact_ids: set[int]) -> dict[int, list[str]]:
        if not contact_ids:
            return {}
        rows = await self._session.execute(
            select(ContactTagRow.contact_id, TagRow.name)
            .join(TagRow, TagRow.id == ContactTagRow.tag_id)
            .where(ContactTagRow.contact_id.in_(contact_ids))
            .order_by(TagRow.name)
        )
        tags: dict[int, list[str]] = {}
        for contact_id, name in rows:
            tags.setdefault(contact_id, []).append(name)
        return tags

    async def set_tags(self, contact_id: int, names: list[str]) -> None:
        await self._session.execute(
            delete(ContactTagRow).where(ContactTagRow.contact_id == contact_id)
        )
        for name in names:
            tag_id = await self._tag_id(name)
            self._session.add(ContactTagRow(contact_id=contact_id, tag_id=tag_id))
        await self._session.flush()

    async def refresh_search_text(self, contact_id: int) -> None:
        row = await self._session.get(ContactRow, contact_id, populate_existing=True)
        if row is None:
            return
        company = await self._session.get(CompanyRow, row.company_id) if row.company_id else None
        text_value = fold(" ".join(p for p in (row.name, company.name if company else None) if p))
        await self._session.execute(
            sql_update(ContactRow).where(ContactRow.id == contact_id).values(search_text=text_value)
        )

    async def _tag_id(self, name: str) -> int:
        key = fold(name)
        tag_id = await self._session.scalar(select(TagRow.id).where(TagRow.name_key == key))
        if tag_id is None:
            row = TagRow(name=clean_name(name), name_key=key)
            self._session.add(row)
            await self._session.flush()
            tag_id = row.id
        return tag_id

    async def _company_id(self, name: str) -> int:
        key = fold(name)
        company_id = await self._session.scalar(
            select(CompanyRow.id).where(CompanyRow.name_key == key)
        )
        if company_id is None:
            row = CompanyRow(name=name, name_key=key)
            self._session.add(row)
            await self._session.flush()
            company_id = row.id
        return company_id

    async def _raise_duplicate(self, contact: Contact) -> None:
        others = await self.find_by_identifiers(
            phone=contact.phone, email=contact.email, external_id=contact.external_id
        )
        duplicate = duplicate_of(contact, others)
        if duplicate is not None:
            raise duplicate


class SqlHistoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, change: StageChange) -> None:
        self._session.add(
            StageChangeRow(
                contact_id=change.contact_id,
                from_stage_id=change.from_stage_id,
                to_stage_id=change.to_stage_id,
                at=change.at,
                by_user_id=change.by_user_id,
                source=change.source.value,
                reason=change.reason,
                operation_id=change.operation_id,
            )
        )
        await self._session.flush()
        await refresh_reports(self._session, [change.contact_id])

    async def add_many(self, changes: list[StageChange]) -> None:
        if not changes:
            return
        await self._session.execute(
            insert(StageChangeRow),
            [
                {
                    "contact_id": change.contact_id,
                    "from_stage_id": change.from_stage_id,
                    "to_stage_id": change.to_stage_id,
                    "at": change.at,
                    "by_user_id": change.by_user_id,
                    "source": change.source.value,
                    "reason": change.reason,
                    "operation_id": change.operation_id,
                }
                for change in changes
            ],
        )
        await refresh_reports(self._session, [change.contact_id for change in changes])

    async def for_contact(self, contact_id: int) -> list[StageChange]:
        rows = await self._session.scalars(
            select(StageChangeRow)
            .where(StageChangeRow.contact_id == contact_id)
            .order_by(StageChangeRow.at, StageChangeRow.id)
        )
        return [_change(row) for row in rows]

    async def latest(self, contact_id: int) -> StageChange | None:
        row = await self._session.scalar(
            select(StageChangeRow)
            .where(StageChangeRow.contact_id == contact_id)
            .order_by(StageChangeRow.at.desc(), StageChangeRow.id.desc())
            .limit(1)
        )
        return _change(row) if row else None


class SqlUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, user_id: int) -> User | None:
        row = await self._session.get(UserRow, user_id)
        return _user(row) if row else None

    async def by_telegram_id(self, telegram_id: int) -> User | None:
        row = await self._session.scalar(select(UserRow).where(UserRow.telegram_id == telegram_id))
        return _user(row) if row else None

    async def by_name(self, name: str) -> list[User]:
        rows = await self._session.scalars(
            select(UserRow).where(UserRow.name_key == fold(name)).order_by(UserRow.id)
        )
        return [_user(row) for row in rows]

    async def get_many(self, user_ids: set[int]) -> dict[int, User]:
        if not user_ids:
            return {}
        rows = await self._session.scalars(select(UserRow).where(UserRow.id.in_(user_ids)))
        return {row.id: _user(row) for row in rows}

    async def list(self) -> list[User]:
        return [
            _user(row) for row in await self._session.scalars(select(UserRow).order_by(UserRow.id))
        ]

    async def add(self, user: User) -> User:
        row = UserRow(**_user_values(user), created_at=user.created_at)
        self._session.add(row)
        await self._session.flush()
        user.id = row.id
        return user

    async def update(self, user: User) -> None:
        await self._session.execute(
            sql_update(UserRow).where(UserRow.id == user.id).values(**_user_values(user))
        )


class SqlCompanyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, company_id: int) -> Company | None:
        row = await self._session.get(CompanyRow, company_id)
        return Company(row.id, row.name) if row else None

    async def by_name(self, name: str) -> Company | None:
        row = await self._session.scalar(
            select(CompanyRow).where(CompanyRow.name_key == fold(name))
        )
        return Company(row.id, row.name) if row else None

    async def names(self, company_ids: set[int]) -> dict[int, str]:
        if not company_ids:
            return {}
        rows = await self._session.execute(
            select(CompanyRow.id, CompanyRow.name).where(CompanyRow.id.in_(company_ids))
        )
        return dict(rows.all())


class SqlActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, activity: Activity) -> Activity:
        row = ActivityRow(
            contact_id=activity.contact_id,
            kind=activity.kind.value,
            text=activity.text,
            at=activity.at,
            by_user_id=activity.by_user_id,
            due_at=activity.due_at,
            done_at=activity.done_at,
        )
        self._session.add(row)
        await self._session.flush()
        activity.id = row.id
        await refresh_reports(self._session, [activity.contact_id])
        return activity

    async def for_contact(
        self, contact_id: int, kinds: Sequence[ActivityKind] | None = None
    ) -> list[Activity]:
        query = select(ActivityRow).where(ActivityRow.contact_id == contact_id)
        if kinds is not None:
            query = query.where(ActivityRow.kind.in_([kind.value for kind in kinds]))
        rows = await self._session.scalars(
            query.order_by(ActivityRow.at.desc(), ActivityRow.id.desc())
        )
        return [
            Activity(
                row.id,
                row.contact_id,
                ActivityKind(row.kind),
                row.text,
                at=row.at,
                by_user_id=row.by_user_id,
                due_at=row.due_at,
                done_at=row.done_at,
            )
            for row in rows
        ]


class SqlOperationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, operation: Operation) -> Operation:
        row = OperationRow(**_operation_values(operation))
        self._session.add(row)
        await self._session.flush()
        operation.id = row.id
        return operation

    async def get(self, operation_id: int) -> Operation | None:
        row = await self._session.get(OperationRow, operation_id)
        return _operation(row) if row else None

    async def recent(self, limit: int, *, actor_id: int | None = None) -> list[Operation]:
        query = select(OperationRow)
        if actor_id is not None:
            query = query.where(OperationRow.actor_id == actor_id)
        rows = await self._session.scalars(
            query.order_by(OperationRow.created_at.desc(), OperationRow.id.desc()).limit(limit)
        )
        return [_operation(row) for row in rows]

    async def update(self, operation: Operation) -> None:
        await self._session.execute(
            sql_update(OperationRow)
            .where(OperationRow.id == operation.id)
            .values(**_operation_values(operation))
        )

    async def add_items(self, items: list[OperationItem]) -> None:
        if not items:
            return
        await self._session.execute(
            insert(OperationItemRow),
            [
                {
                    "operation_id": item.operation_id,
                    "contact_id": item.contact_id,
                    "created": item.created,
                    "before_stage_id": item.before_stage_id,
                    "before_stage_entered_at": item.before_stage_entered_at,
                    "before_last_activity_at": item.before_last_activity_at,
                    "before_fields": item.before_fields,
                    "after_version": item.after_version,
                }
                for item in items
            ],
        )

    async def changed_since(self, operation_id: int) -> list[int]:
        query = (
            select(OperationItemRow.contact_id)
            .outerjoin(ContactRow, ContactRow.id == OperationItemRow.contact_id)
            .where(
                OperationItemRow.operation_id == operation_id,
                or_(
                    ContactRow.id.is_(None),
                    ContactRow.version != OperationItemRow.after_version,
                ),
            )
            .order_by(OperationItemRow.contact_id)
        )
        return list(await self._session.scalars(query))

    async def revert(self, operation_id: int, *, by_user_id: int | None) -> int:
        item = OperationItemRow
        unchanged = (
            select(item.contact_id)
            .join(ContactRow, ContactRow.id == item.contact_id)
            .where(item.operation_id == operation_id, ContactRow.version == item.after_version)
        )
        await self._session.execute(
            delete(StageChangeRow).where(
                StageChangeRow.operation_id == operation_id,
                StageChangeRow.contact_id.in_(unchanged),
            )
        )
        await self._restore_profiles(operation_id)
        created = await self._session.execute(
            delete(ContactRow).where(ContactRow.id.in_(unchanged.where(item.created.is_(True))))
        )
        restored = await self._session.execute(
            sql_update(ContactRow)
            .where(
                ContactRow.id == item.contact_id,
                item.operation_id == operation_id,
                item.created.is_(False),
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
        await refresh_reports(
            self._session,
            select(OperationItemRow.contact_id).where(
                OperationItemRow.operation_id == operation_id
            ),
        )
        return int(created.rowcount) + int(restored.rowcount)  # type: ignore[attr-defined]

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
        contacts = SqlContactRepository(self._session)
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


def _operation_values(operation: Operation) -> dict[str, Any]:
    return {
        "kind": operation.kind,
        "actor_id": operation.actor_id,
        "description": operation.description,
        "created_at": operation.created_at,
        "undone_at": operation.undone_at,
        "stage_id": operation.stage_id,
        "contacts": operation.contacts,
        "undone_by_id": operation.undone_by_id,
    }


def _operation(row: OperationRow) -> Operation:
    return Operation(
        row.id,
        row.kind,
        row.actor_id,
        row.description,
        row.created_at,
        row.undone_at,
        stage_id=row.stage_id,
        contacts=row.contacts,
        undone_by_id=row.undone_by_id,
    )


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
        return _view(row) if row else None

    async def visible_to(self, user_id: int | None) -> list[SavedView]:
        rows = await self._session.scalars(
            select(SavedViewRow)
            .where(or_(SavedViewRow.shared.is_(True), SavedViewRow.owner_id == user_id))
            .order_by(SavedViewRow.name, SavedViewRow.id)
        )
        return [_view(row) for row in rows]

    async def delete(self, view_id: int) -> None:
        await self._session.execute(delete(SavedViewRow).where(SavedViewRow.id == view_id))


def _view(row: SavedViewRow) -> SavedView:
    return SavedView(row.id, row.owner_id, row.name, dict(row.filter), row.shared, row.created_at)


class SqlAccessRequestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, request: AccessRequest) -> AccessRequest:
        row = AccessRequestRow(**_request_values(request))
        self._session.add(row)
        await self._session.flush()
        request.id = row.id
        return request

    async def get(self, request_id: int) -> AccessRequest | None:
        row = await self._session.get(AccessRequestRow, request_id)
        return _request(row) if row else None

    async def pending_for(self, telegram_id: int) -> AccessRequest | None:
        row = await self._session.scalar(
            select(AccessRequestRow).where(
                AccessRequestRow.telegram_id == telegram_id,
                AccessRequestRow.status == RequestStatus.PENDING.value,
            )
        )
        return _request(row) if row else None

    async def pending(self) -> list[AccessRequest]:
        rows = await self._session.scalars(
            select(AccessRequestRow)
            .where(AccessRequestRow.status == RequestStatus.PENDING.value)
            .order_by(AccessRequestRow.requested_at)
        )
        return [_request(row) for row in rows]

    async def update(self, request: AccessRequest) -> None:
        await self._session.execute(
            sql_update(AccessRequestRow)
            .where(AccessRequestRow.id == request.id)
            .values(**_request_values(request))
        )


def _request_values(request: AccessRequest) -> dict[str, Any]:
    return {
        "telegram_id": request.telegram_id,
        "name": request.name,
        "username": request.username,
        "language": request.language,
        "requested_at": request.requested_at,
        "status": request.status.value,
        "decided_by_id": request.decided_by_id,
        "decided_at": request.decided_at,
    }


def _request(row: AccessRequestRow) -> AccessRequest:
    return AccessRequest(
        row.id,
        row.telegram_id,
        row.name,
        username=row.username,
        language=row.language,
        requested_at=row.requested_at,
        status=RequestStatus(row.status),
        decided_by_id=row.decided_by_id,
        decided_at=row.decided_at,
    )


ID_CHUNK = 5000


def _in_stage(stage_id: int | None) -> ColumnElement[bool]:
    return ContactRow.stage_id.is_(None) if stage_id is None else ContactRow.stage_id == stage_id


def _scope_filter(scope: Scope) -> ColumnElement[bool]:
    if scope.everything:
        return literal(True)
    conditions = [ContactRow.owner_id == scope.owner_id]
    if scope.team is not None:
        conditions.append(
            ContactRow.owner_id.in_(select(UserRow.id).where(UserRow.team == scope.team))
        )
    return or_(*conditions)


def _search_text(contact: Contact, company_name: str | None) -> str:
    return fold(" ".join(part for part in (contact.name, company_name) if part))


def _contact_values(contact: Contact) -> dict[str, Any]:
    return {
        "name": contact.name,
        "phone": contact.phone,
        "email": contact.email,
        "external_id": contact.external_id,
        "company_id": contact.company_id,
        "source": contact.source,
        "owner_id": contact.owner_id,
        "stage_id": contact.stage_id,
        "value": contact.value,
        "custom_fields": contact.custom_fields,
        "created_at": contact.created_at,
        "stage_entered_at": contact.stage_entered_at,
        "last_activity_at": contact.last_activity_at,
        "version": contact.version,
        "updated_by_id": contact.updated_by_id,
    }


def _contact(row: ContactRow, tags: list[str]) -> Contact:
    return Contact(
        id=row.id,
        name=row.name,
        phone=row.phone,
        email=row.email,
        external_id=row.external_id,
        company_id=row.company_id,
        source=row.source,
        owner_id=row.owner_id,
        stage_id=row.stage_id,
        value=row.value,
        tags=tags,
        custom_fields=dict(row.custom_fields or {}),
        created_at=row.created_at,
        stage_entered_at=row.stage_entered_at,
        last_activity_at=row.last_activity_at,
        version=row.version,
        updated_by_id=row.updated_by_id,
    )


def _stage(row: StageRow) -> Stage:
    return Stage(row.id, row.name, Category(row.category), row.position, row.archived_at)


def _change(row: StageChangeRow) -> StageChange:
    return StageChange(
        contact_id=row.contact_id,
        from_stage_id=row.from_stage_id,
        to_stage_id=row.to_stage_id,
        at=row.at,
        by_user_id=row.by_user_id,
        source=Source(row.source),
        reason=row.reason,
        operation_id=row.operation_id,
        id=row.id,
    )


def _user_values(user: User) -> dict[str, Any]:
    return {
        "telegram_id": user.telegram_id,
        "name": user.name,
        "name_key": fold(user.name),
        "role": user.role.value,
        "team": user.team,
        "active": user.active,
        "language": user.language,
    }


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        telegram_id=row.telegram_id,
        team=row.team,
        active=row.active,
        language=row.language,
        created_at=row.created_at,
    )
