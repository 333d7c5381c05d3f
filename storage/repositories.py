"""Repositories: map rows to domain entities. They flush but never commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    Text,
    and_,
    case,
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
    union,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Scope
from domain.errors import DuplicateStageName
from domain.model import (
    AccessRequest,
    Activity,
    ActivityKind,
    ApiKey,
    Category,
    Company,
    Contact,
    CustomFieldDef,
    DigestSection,
    DigestSettings,
    EventKind,
    FieldKind,
    Notice,
    Operation,
    OperationItem,
    Outcome,
    ReceivedEvent,
    RequestStatus,
    Role,
    SavedView,
    Source,
    Stage,
    StageChange,
    User,
    utcnow,
)
from domain.ports import (
    BulkMove,
    Conflict,
    ContactFilter,
    ContactWrite,
    DuplicateEvent,
    SearchCriteria,
)
from domain.services.contacts import duplicate_of
from domain.text import clean_name, fold, search_text
from storage import bulk, pipeline
from storage import reports as report_rows
from storage.models import (
    AccessRequestRow,
    ActivityRow,
    ApiKeyRow,
    AssignmentTurnRow,
    AutomationRuleRow,
    CompanyRow,
    ContactRow,
    ContactTagRow,
    CustomFieldRow,
    DeliveryRow,
    DigestSettingsRow,
    EventRow,
    NoticeRow,
    OperationItemRow,
    OperationRow,
    ReportContactRow,
    ReportMoveRow,
    SavedViewRow,
    StageChangeRow,
    StageRow,
    TagRow,
    UserRow,
)
from storage.reports import mark_stale
from storage.reports import refresh as refresh_reports

# SQLite's FTS5 index of contacts.search_text (created by the migrations, kept by triggers, and
# for contacts an import creates by `add_many`).
CONTACT_SEARCH = table("contact_search", column("rowid", Integer), column("search_text", Text))
# The indexes of the contacts' columns a stage change sets (rebuilt by large moves).
_STAGE_INDEXES = ("ix_contacts_stage_id", "ix_contacts_last_activity_at")


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
            idle_days=stage.idle_days,
            created_at=utcnow(),
        )
        self._session.add(row)
        await self._flush_name(stage.name)
        report_rows.stages_changed(self._session)
        stage.id = row.id
        return stage

    async def update(self, stage: Stage) -> None:
        assert stage.id is not None
        category = await self._session.scalar(
            select(StageRow.category).where(StageRow.id == stage.id)
        )
        await self._session.execute(
            sql_update(StageRow)
            .where(StageRow.id == stage.id)
            .values(
                name=stage.name,
                name_key=fold(stage.name),
                category=stage.category.value,
                position=stage.position,
                archived_at=stage.archived_at,
                idle_days=stage.idle_days,
            )
        )
        await self._flush_name(stage.name)
        report_rows.stages_changed(self._session)
        if category != stage.category.value:
            await report_rows.recategorized(self._session, stage.id)

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


def _identifiers_taken() -> Conflict:
    return Conflict("another contact took one of these identifiers meanwhile")


class _StaleContacts(Exception):
    """Some contacts of a bulk write changed since they were read."""


class SqlContactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._company_key: dict[int, str] = {}
        self._tag_id_by_key: dict[str, int] = {}
        self._given_up_to = 0  # the largest id add_many gave out

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
            **_contact_values(contact),
            search_text=search_text(contact.name, fold(company_name) if company_name else None),
        )
        try:
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError:
            await self._raise_duplicate(contact)
            raise
        contact.id = row.id
        if contact.tags:  # a new contact has no tag links to replace
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
                search_text=search_text(contact.name, company.name_key if company else None),
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
        if where.idle_since is not None or where.idle_by_stage:
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

    def _matching(self, where: ContactFilter, scope: Scope) -> list[ColumnElement[bool]]:
        conditions = [_scope_filter(scope)]
        if where.words:
            conditions.append(ContactRow.id.in_(self._word_ids(where.words)))
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
        if where.idle_by_stage:
            moment = ContactRow.last_activity_at.type
            cutoffs = {stage_id: literal(at, moment) for stage_id, at in where.idle_by_stage}
            conditions.append(ContactRow.stage_id.in_(cutoffs))
            conditions.append(
                ContactRow.last_activity_at < case(cutoffs, value=ContactRow.stage_id)
            )
        if where.without_task_after is not None:
            task_ahead = select(ActivityRow.id).where(
                ActivityRow.contact_id == ContactRow.id,
                ActivityRow.kind == ActivityKind.TASK.value,
                ActivityRow.done_at.is_(None),
                ActivityRow.due_at > where.without_task_after,
            )
            conditions.append(~task_ahead.exists())
        return conditions

    async def find_many(
        self,
        *,
        phones: list[str],
        emails: list[str],
        external_ids: list[str],
        lock: bool = False,
    ) -> list[Contact]:
        if lock:
            # One statement, locking in id order, so that two workers never wait for each
            # other in a ring (a batch of events has a few hundred identifiers at most).
            query = (
                select(ContactRow)
                .where(
                    or_(
                        ContactRow.phone.in_(phones),
                        ContactRow.email.in_(emails),
                        ContactRow.external_id.in_(external_ids),
                    )
                )
                .order_by(ContactRow.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            return await self._load(query)
        # Rows as the driver gives them, converted while the contacts are made: a batch of
        # imported rows finds thousands, most of which it will leave as they are.
        found: dict[int, Sequence[Any]] = {}
        converters: list[bulk.Converter | None] = []
        columns = ("id", *CONTACT_FIELDS)
        for identifier, values in (
            ("phone", phones),
            ("email", emails),
            ("external_id", external_ids),
        ):
            # A contact found by its phone is not read again for its email.
            position = columns.index(identifier)
            if found:
                known = {row[position] for row in found.values()}
                values = [value for value in values if value not in known]
            if not values:
                continue
            rows, converters = await bulk.select_raw(
                self._session, ContactRow, columns, identifier, values
            )
            for row in rows:
                found[row[0]] = row
        if not found:
            return []
        contacts = _contacts_from(found.values(), converters)
        await self._company_keys({c.company_id for c in contacts if c.company_id is not None})
        by_id = dict(zip(found, contacts, strict=True))
        tagged: set[int] = set()
        for contact_id, name in await self._tag_names(list(found)):
            by_id[contact_id].tags.append(name)
            tagged.add(contact_id)
        for contact_id in tagged:
            by_id[contact_id].tags.sort()
        return contacts

    async def _tag_names(self, contact_ids: list[int]) -> list[tuple[int, str]]:
        """(contact id, tag name) of these contacts' tags."""
        return await bulk.select_text(
            self._session,
            "SELECT contact_tags.contact_id, tags.name FROM contact_tags "
            "JOIN tags ON tags.id = contact_tags.tag_id WHERE contact_tags.contact_id IN ",
            contact_ids,
        )

    async def company_ids(self, names: Collection[str], *, create: bool) -> dict[str, int]:
        keys = {name: fold(name) for name in names}
        ids = await self._ids_by_key(CompanyRow, set(keys.values()))
        missing = {key: name for name, key in keys.items() if key not in ids}
        if create and missing:
            added = await bulk.insert(
                self._session,
                CompanyRow,
                ("name", "name_key"),
                [(name, key) for key, name in missing.items()],
                returning=("id", "name_key"),
            )
            ids.update({key: company_id for company_id, key in added})
        self._company_key.update({company_id: key for key, company_id in ids.items()})
        return {name: ids[key] for name, key in keys.items() if key in ids}

    async def add_many(
        self,
        contacts: list[Contact],
        *,
        operation_id: int | None = None,
        search_texts: Sequence[str] | None = None,
    ) -> None:
        if search_texts is None:
            await self._company_keys({c.company_id for c in contacts if c.company_id is not None})
            search_texts = [self._search_text(c) for c in contacts]
        ids = await _new_ids(self._session, ContactRow, len(contacts), after=self._given_up_to)
        if ids:
            self._given_up_to = ids[-1]
        for contact, contact_id in zip(contacts, ids, strict=True):
            contact.id = contact_id
        rows = [
            (c.id, *_contact_fields(c), text, operation_id)
            for c, text in zip(contacts, search_texts, strict=True)
        ]
        await bulk.insert(
            self._session,
            ContactRow,
            ("id", *CONTACT_COLUMNS, "created_by_operation_id"),
            rows,
            refused=_identifiers_taken,
        )
        if ids and operation_id is not None and self._session.get_bind().dialect.name == "sqlite":
            # The insert trigger leaves contacts an import creates to this one statement
            # (migration 0012): FTS5 takes a batch's words at once for less.
            await bulk.execute(
                self._session,
                "INSERT INTO contact_search (rowid, search_text) "
                "SELECT id, search_text FROM contacts WHERE id BETWEEN ? AND ?",
                (ids[0], ids[-1]),
            )
        await self._add_tags(contacts)
        report_rows.created(self._session, contacts)

    async def update_many(self, writes: list[ContactWrite]) -> list[int]:
        await self._company_keys(
            {w.contact.company_id for w in writes if w.contact.company_id is not None}
        )
        fresh = writes
        while not await self._write_all_or_none(fresh):
            versions = dict(
                await bulk.select_in(
                    self._session,
                    ContactRow,
                    ("id", "version"),
                    "id",
                    [w.contact.id for w in fresh],
                )
            )
            unchanged = [w for w in fresh if versions.get(w.contact.id) == w.expected_version]
            if len(unchanged) == len(fresh):
                raise RuntimeError("a bulk update wrote fewer contacts than it was given")
            fresh = unchanged
        retagged = [w.contact for w in fresh if "tags" in w.changed]
        for start in range(0, len(retagged), ID_CHUNK):
            chunk = [c.id for c in retagged[start : start + ID_CHUNK]]
            await self._session.execute(
                delete(ContactTagRow).where(ContactTagRow.contact_id.in_(chunk))
            )
        await self._add_tags(retagged)
        mark_stale(self._session, (w.contact.id for w in fresh if w.changed & REPORTED_FIELDS))
        written = {w.contact.id for w in fresh}
        return [
            w.contact.id for w in writes if w.contact.id is not None and w.contact.id not in written
        ]

    async def _write_all_or_none(self, writes: list[ContactWrite]) -> bool:
        """Writes the contacts if none changed since they were read, else none of them. Only
        the columns that change are written, one statement for each set of them: SQLite
        rewrites the index entries (and the search index's) of every column it is told to
        set, changed or not."""
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for w in writes:
            columns = _changed_columns(w.changed)
            values = [
                self._search_text(w.contact) if name == "search_text" else getattr(w.contact, name)
                for name in columns
            ]
            by_columns.setdefault(columns, []).append((w.contact.id, w.expected_version, *values))
        try:
            async with self._session.begin_nested():
                written = 0
                for columns, rows in by_columns.items():
                    written += await bulk.update(self._session, ContactRow, columns, rows)
                if written < len(writes):
                    raise _StaleContacts
        except _StaleContacts:
            return False
        return True

    def _search_text(self, contact: Contact) -> str:
        key = self._company_key.get(contact.company_id) if contact.company_id else None
        return search_text(contact.name, key)

    async def _company_keys(self, company_ids: set[int]) -> None:
        """Remembers the keys of these companies (for search texts). Companies are never renamed
        or removed, so a unit of work reads each once."""
        missing = [i for i in company_ids if i not in self._company_key]
        if missing:
            self._company_key.update(
                await bulk.select_in(self._session, CompanyRow, ("id", "name_key"), "id", missing)
            )

    async def _add_tags(self, contacts: Sequence[Contact]) -> None:
        names: dict[str, str] = {}  # a million contacts name a few tags: each folded once
        for contact in contacts:
            for tag in contact.tags:
                if tag not in names:
                    names[tag] = fold(tag)
        if not names:
            return
        unknown = {key for key in names.values() if key not in self._tag_id_by_key}
        if unknown:  # tags are never renamed or removed: a unit of work looks each up once
            ids = await self._ids_by_key(TagRow, unknown)
            missing = {key: tag for tag, key in names.items() if key in unknown - set(ids)}
            if missing:
                added = await bulk.insert(
                    self._session,
                    TagRow,
                    ("name", "name_key"),
                    [(clean_name(tag), key) for key, tag in missing.items()],
                    returning=("id", "name_key"),
                )
                ids.update({key: tag_id for tag_id, key in added})
            self._tag_id_by_key.update(ids)
        links = {(c.id, self._tag_id_by_key[names[tag]]) for c in contacts for tag in c.tags}
        await bulk.insert(self._session, ContactTagRow, ("contact_id", "tag_id"), list(links))

    async def _ids_by_key(
        self, model: type[CompanyRow] | type[TagRow], keys: set[str]
    ) -> dict[str, int]:
        ids: dict[str, int] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), ID_CHUNK):
            query = select(model.name_key, model.id).where(
                model.name_key.in_(ordered[start : start + ID_CHUNK])
            )
            ids.update((await self._session.execute(query)).all())
        return ids

    async def count_in_stage(self, stage_id: int) -> int:
        count = await self._session.scalar(
            select(func.count()).select_from(ContactRow).where(ContactRow.stage_id == stage_id)
        )
        return count or 0

    async def count_by_stage(self, where: ContactFilter, scope: Scope) -> dict[int | None, int]:
        rows = await self._session.execute(
            select(ContactRow.stage_id, func.count())
            .where(*self._matching(where, scope))
            .group_by(ContactRow.stage_id)
        )
        return dict(rows.all())

    async def move_stage_contents(self, move: BulkMove) -> int:
        """Set-based, however many contacts: the before-images for undo, the history rows, then
        the contacts, each one statement with the same condition."""
        where = _in_stage(move.from_stage_id)
        if move.matching is not None:
            where = and_(where, *self._matching(move.matching, move.scope))
        return await self._move_where(move, where)

    async def _move_where(self, move: BulkMove, where: ColumnElement[bool]) -> int:
        # An operation's rows are told apart by it; the report rows of others are recomputed.
        in_bulk = move.operation_id is not None and move.source is not Source.MANUAL
        moving: list[int] = []
        if not in_bulk:
            moving = list(await self._session.scalars(select(ContactRow.id).where(where)))
        last_change = await self._session.scalar(select(func.max(StageChangeRow.id))) or 0
        rebuild = False  # the indexes of what a move sets (bulk.indexes_rebuilt)
        if in_bulk:  # a limit: a small move uses few pages
            await bulk.keep_more_pages(self._session)
        if move.operation_id is not None:
            # With what its undo needs to put the report row back as it was.
            rc = ReportContactRow
            before = (
                select(
                    literal(move.operation_id),
                    ContactRow.id,
                    ContactRow.stage_id,
                    ContactRow.stage_entered_at,
                    ContactRow.last_activity_at,
                    ContactRow.version + 1,
                    rc.path,
                    rc.touched,
                    rc.entered_s,
                    rc.last_at_s,
                )
                .outerjoin(rc, rc.contact_id == ContactRow.id)
                .where(where)
            )
            saved = await self._session.execute(
                insert(OperationItemRow).from_select(
                    [
                        "operation_id",
                        "contact_id",
                        "before_stage_id",
                        "before_stage_entered_at",
                        "before_last_activity_at",
                        "after_version",
                        "before_report_path",
                        "before_report_touched",
                        "before_report_entered_s",
                        "before_report_last_at_s",
                    ],
                    before,
                )
            )
            rebuild = in_bulk and await bulk.worth_rebuilding(
                self._session,
                ContactRow,
                saved.rowcount,  # type: ignore[attr-defined]
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
        async with bulk.indexes_rebuilt(self._session, _STAGE_INDEXES if rebuild else ()):
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
        if in_bulk:
            assert move.operation_id is not None
            await report_rows.moved_in_bulk(
                self._session,
                operation_id=move.operation_id,
                after_change_id=last_change,
                at=move.at,
                to_stage_id=move.to_stage_id,
                rebuild=rebuild,
            )
        else:
            await refresh_reports(self._session, moving)
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _word_ids(self, words: Sequence[str]) -> Select[Any]:
        """The ids of the contacts `_word_match` finds, unordered, for use in a condition."""
        if self._session.get_bind().dialect.name == "postgresql":
            return self._word_match(words).with_only_columns(ContactRow.id).order_by(None)
        fts_query = " ".join(f'"{word}"*' for word in words)
        return select(CONTACT_SEARCH.c.rowid).where(
            text("contact_search MATCH :fts").bindparams(fts=fts_query)
        )

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
        text_value = search_text(row.name, company.name_key if company else None)
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
        self._given_up_to = 0  # the largest id new_ids gave out

    async def add(self, change: StageChange) -> None:
        await self._session.execute(insert(StageChangeRow).values(_change_values(change)))
        await refresh_reports(self._session, [change.contact_id])

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
        await report_rows.appended(self._session, changes)

    async def new_ids(self, count: int) -> list[int]:
        # After those given out before, which may not be inserted yet.
        ids = await _new_ids(self._session, StageChangeRow, count, after=self._given_up_to)
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
            reminded_at=activity.reminded_at,
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
        return [_activity(row) for row in rows]

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
        return [_activity(row) for row in rows]


def _activity(row: ActivityRow) -> Activity:
    return Activity(
        row.id,
        row.contact_id,
        ActivityKind(row.kind),
        row.text,
        at=row.at,
        by_user_id=row.by_user_id,
        due_at=row.due_at,
        done_at=row.done_at,
        reminded_at=row.reminded_at,
    )


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

    async def paused(self, user_id: int) -> bool:
        blocked_at = await self._session.scalar(
            select(DigestSettingsRow.blocked_at).where(DigestSettingsRow.user_id == user_id)
        )
        return blocked_at is not None

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
        restored_reports = await report_rows.unmoved(
            self._session,
            operation_id,
            rebuild=await bulk.worth_rebuilding(self._session, ContactRow, moves),
        )
        undone_moves = and_(
            StageChangeRow.operation_id == operation_id,
            StageChangeRow.contact_id.in_(unchanged),
        )
        undone_ids = select(StageChangeRow.id).where(undone_moves)
        await report_rows.forget_history(self._session, ReportMoveRow.change_id.in_(undone_ids))
        await self._session.execute(delete(StageChangeRow).where(undone_moves))
        await self._restore_profiles(operation_id)
        # Their history rows and tags go with them (ON DELETE CASCADE). Unchanged since the
        # import, they have only the history row that created them, which ends no stay.
        created = and_(
            ContactRow.created_by_operation_id == operation_id,
            ContactRow.version == CREATED_VERSION,
        )
        removed = await self._session.execute(delete(ContactRow).where(created))
        async with bulk.indexes_rebuilt(self._session, _STAGE_INDEXES if rebuild else ()):
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
        await refresh_reports(self._session, [i for i in reverted if i not in restored_reports])
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


# A contact's fields its report rows read (storage.reports.rows_of).
# (A stage change comes with its history row, which brings the report rows in step.)
REPORTED_FIELDS = frozenset({"owner_id", "source", "created_at"})
PROFILE_COLUMNS = ("name", "phone", "email", "external_id", "source", "owner_id", "company_id")
# A contact is first written at version 1 (domain.model.Contact); every later write raises it.
CREATED_VERSION = 1


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
        query = select(SavedViewRow).order_by(SavedViewRow.name, SavedViewRow.id)
        if user_id is not None:
            query = query.where(
                or_(SavedViewRow.shared.is_(True), SavedViewRow.owner_id == user_id)
            )
        rows = await self._session.scalars(query)
        return [_view(row) for row in rows]

    async def delete(self, view_id: int) -> None:
        await self._session.execute(delete(SavedViewRow).where(SavedViewRow.id == view_id))


def _view(row: SavedViewRow) -> SavedView:
    return SavedView(row.id, row.owner_id, row.name, dict(row.filter), row.shared, row.created_at)


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


class SqlApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, key: ApiKey) -> ApiKey:
        row = ApiKeyRow(
            name=key.name,
            name_key=fold(key.name),
            prefix=key.prefix,
            secret_hash=key.secret_hash,
            created_at=key.created_at,
            created_by_id=key.created_by_id,
            revoked_at=key.revoked_at,
        )
        self._session.add(row)
        await self._session.flush()
        key.id = row.id
        return key

    async def active_named(self, name: str) -> ApiKey | None:
        row = await self._session.scalar(
            select(ApiKeyRow).where(
                ApiKeyRow.name_key == fold(name), ApiKeyRow.revoked_at.is_(None)
            )
        )
        return _api_key(row) if row else None

    async def by_prefixes(self, prefixes: set[str]) -> list[ApiKey]:
        rows = await self._session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix.in_(prefixes)))
        return [_api_key(row) for row in rows]

    async def list(self) -> list[ApiKey]:
        rows = await self._session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id.desc()))
        return [_api_key(row) for row in rows]

    async def update(self, key: ApiKey) -> None:
        await self._session.execute(
            sql_update(ApiKeyRow).where(ApiKeyRow.id == key.id).values(revoked_at=key.revoked_at)
        )


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        row.id,
        row.name,
        row.prefix,
        row.secret_hash,
        created_at=row.created_at,
        created_by_id=row.created_by_id,
        revoked_at=row.revoked_at,
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
            event.id = ids[_identity_of(event)].pop()

    async def by_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], ReceivedEvent]:
        if not keys:
            return {}
        rows = await self._session.scalars(
            select(EventRow).where(
                EventRow.via.in_({via for via, _ in keys}),
                EventRow.idempotency_key.in_({key for _, key in keys}),
            )
        )
        found = (_event(row) for row in rows)
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
            select(EventRow)
            .where(EventRow.contact_id == contact_id)
            .order_by(EventRow.id.desc())
            .limit(limit)
        )
        return [_event(row) for row in rows]


EVENT_COLUMNS = (
    "kind",
    "contact_id",
    "received_at",
    "via",
    "idempotency_key",
    "fingerprint",
    "source",
    "value",
    "outcome",
    "created_contact",
    "from_stage_id",
    "to_stage_id",
    "detail",
)
# Columns that tell the events of one batch apart (the rest follows from them), read back as
# plain values by every driver.
EVENT_IDENTITY = (
    "contact_id",
    "kind",
    "via",
    "idempotency_key",
    "fingerprint",
    "outcome",
    "from_stage_id",
    "to_stage_id",
)


def _identity_of(event: ReceivedEvent) -> tuple[Any, ...]:
    return (
        event.contact_id,
        event.kind.value,
        event.via,
        event.idempotency_key,
        event.fingerprint,
        event.outcome.value,
        event.from_stage_id,
        event.to_stage_id,
    )


def _event(row: EventRow) -> ReceivedEvent:
    return ReceivedEvent(
        row.id,
        EventKind(row.kind),
        row.contact_id,
        row.received_at,
        row.via,
        Outcome(row.outcome),
        row.fingerprint,
        idempotency_key=row.idempotency_key,
        source=row.source,
        value=row.value,
        created_contact=row.created_contact,
        from_stage_id=row.from_stage_id,
        to_stage_id=row.to_stage_id,
        detail=row.detail,
    )


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


# A contact's columns, in the order bulk writes give them.
CONTACT_FIELDS = (
    "name",
    "phone",
    "email",
    "external_id",
    "company_id",
    "source",
    "owner_id",
    "stage_id",
    "value",
    "custom_fields",
    "created_at",
    "stage_entered_at",
    "last_activity_at",
    "version",
    "updated_by_id",
)
CONTACT_COLUMNS = (*CONTACT_FIELDS, "search_text")
HISTORY_COLUMNS = (
    "contact_id",
    "from_stage_id",
    "to_stage_id",
    "at",
    "by_user_id",
    "source",
    "reason",
    "operation_id",
)
ITEM_COLUMNS = (
    "operation_id",
    "contact_id",
    "before_stage_id",
    "before_stage_entered_at",
    "before_last_activity_at",
    "before_fields",
    "after_version",
)
_contact_fields = attrgetter(*CONTACT_FIELDS)


@lru_cache(maxsize=256)
def _changed_columns(changed: frozenset[str]) -> tuple[str, ...]:
    """The columns a bulk update writes for these changed fields: theirs, the version and who
    updated the contact, and the search text (last) when the name or the company changed."""
    columns = [
        name for name in CONTACT_FIELDS if name in changed or name in ("version", "updated_by_id")
    ]
    searched = bool(changed & {"name", "company_id"})
    return (*columns, "search_text") if searched else tuple(columns)


async def _new_ids(
    session: AsyncSession,
    model: type[ContactRow] | type[StageChangeRow],
    count: int,
    *,
    after: int = 0,
) -> list[int]:
    """Ids for rows about to be inserted in bulk, all above `after` (ids given out before and
    maybe not inserted yet). Inserting rows with their ids spares reading back a row each
    (RETURNING: the SQLite driver's thread takes Python's lock for each row read, and waits for
    it while this thread is busy), and lets the report rows of new contacts and history be
    written from what was inserted."""
    if not count:
        return []
    rows = model.__table__
    assert isinstance(rows, Table)
    if session.get_bind().dialect.name == "postgresql":
        sequence = select(func.nextval(func.pg_get_serial_sequence(rows.name, "id"))).select_from(
            func.generate_series(1, count)
        )
        return list(await session.scalars(sequence))
    # SQLite: the transaction holds the database's write lock from its start (BEGIN
    # IMMEDIATE), so nobody else takes the ids after the largest. In a pipeline, the largest
    # is read again only after a statement that may have inserted rows with ids of their own.
    behind = pipeline.of(await session.connection())
    largest = behind.remembered(rows.name) if behind is not None else None
    if largest is None:
        largest = await session.scalar(select(func.max(rows.c.id))) or 0
        if behind is not None:
            behind.remember(rows.name, largest)
    first = max(largest, after) + 1
    return list(range(first, first + count))


def _contact_values(contact: Contact) -> dict[str, Any]:
    return dict(zip(CONTACT_FIELDS, _contact_fields(contact), strict=True))


def _contact(row: ContactRow, tags: list[str]) -> Contact:
    return _contact_from((row.id, *_contact_fields(row)), tags)


def _contact_from(values: Sequence[Any], tags: list[str]) -> Contact:
    """A contact from its id and its CONTACT_FIELDS, in order."""
    (
        contact_id,
        name,
        phone,
        email,
        external_id,
        company_id,
        source,
        owner_id,
        stage_id,
        value,
        custom_fields,
        created_at,
        stage_entered_at,
        last_activity_at,
        version,
        updated_by_id,
    ) = values
    return Contact(
        id=contact_id,
        name=name,
        phone=phone,
        email=email,
        external_id=external_id,
        company_id=company_id,
        source=source,
        owner_id=owner_id,
        stage_id=stage_id,
        value=value,
        tags=tags,
        custom_fields=dict(custom_fields or {}),
        created_at=created_at,
        stage_entered_at=stage_entered_at,
        last_activity_at=last_activity_at,
        version=version,
        updated_by_id=updated_by_id,
    )


def _contacts_from(
    rows: Collection[Sequence[Any]], converters: Sequence[bulk.Converter | None]
) -> list[Contact]:
    """Contacts (without their tags) from rows of their id and CONTACT_FIELDS, in order, as the
    driver gives them, each value converted by its column's converter (bulk.select_raw)."""
    same = _same
    value_of, fields_of, created_of, entered_of, activity_of = (
        converters[1 + CONTACT_FIELDS.index(name)] or same
        for name in ("value", "custom_fields", "created_at", "stage_entered_at", "last_activity_at")
    )
    assert not any(
        converters[1 + i] for i, name in enumerate(CONTACT_FIELDS) if name not in _CONVERTED
    ), "a contact column needs converting that _contacts_from passes on as it is"
    return [
        Contact(
            contact_id,
            name,
            phone,
            email,
            external_id,
            company_id,
            source,
            owner_id,
            stage_id,
            value_of(value),
            [],
            dict(fields_of(custom_fields) or ()),  # the converted dicts are shared
            created_of(created_at),
            entered_of(stage_entered_at),
            activity_of(last_activity_at),
            version,
            updated_by_id,
        )
        for (
            contact_id,
            name,
            phone,
            email,
            external_id,
            company_id,
            source,
            owner_id,
            stage_id,
            value,
            custom_fields,
            created_at,
            stage_entered_at,
            last_activity_at,
            version,
            updated_by_id,
        ) in rows
    ]


_CONVERTED = frozenset(
    ("value", "custom_fields", "created_at", "stage_entered_at", "last_activity_at")
)


def _same(value: Any) -> Any:
    return value


def _stage(row: StageRow) -> Stage:
    return Stage(
        row.id, row.name, Category(row.category), row.position, row.archived_at, row.idle_days
    )


def _change_values(change: StageChange) -> dict[str, Any]:
    return {
        "contact_id": change.contact_id,
        "from_stage_id": change.from_stage_id,
        "to_stage_id": change.to_stage_id,
        "at": change.at,
        "by_user_id": change.by_user_id,
        "source": change.source.value,
        "reason": change.reason,
        "operation_id": change.operation_id,
    }


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
