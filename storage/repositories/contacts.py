"""Contacts, their tags and companies: single and bulk writes, and bulk stage moves."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, literal, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DuplicateContact
from domain.model import Company, Contact, Source
from domain.ports import BulkMove, Conflict, ContactWrite
from domain.text import clean_name, fold, search_text
from storage import bulk
from storage.models import (
    CompanyRow,
    ContactRow,
    ContactTagRow,
    OperationItemRow,
    ReportContactRow,
    StageChangeRow,
    TagRow,
)
from storage.report_projection import ReportProjection
from storage.repositories.ids import ID_CHUNK, next_ids
from storage.repositories.mapping import (
    CONTACT_COLUMNS,
    CONTACT_FIELDS,
    HISTORY_COLUMNS,
    contact_fields,
    contact_from_row,
    contact_values,
    contacts_from_raw,
)
from storage.repositories.search import SqlContactSearch, in_stage

# The indexes of the contacts' columns a stage change sets (rebuilt by large moves).
STAGE_INDEXES = ("ix_contacts_stage_id", "ix_contacts_last_activity_at")


# A contact's fields its report rows read (storage.report_rows.rows_of).
# (A stage change comes with its history row, which brings the report rows in step.)
REPORTED_FIELDS = frozenset({"owner_id", "source", "created_at"})


def _identifiers_taken() -> Conflict:
    return Conflict("another contact took one of these identifiers meanwhile")


class _StaleContacts(Exception):
    """Some contacts of a bulk write changed since they were read."""


class SqlContactRepository(SqlContactSearch):
    def __init__(self, session: AsyncSession, projection: ReportProjection) -> None:
        super().__init__(session)
        self._projection = projection
        self._company_key: dict[int, str] = {}
        self._tag_id_by_key: dict[str, int] = {}
        self._given_up_to = 0  # the largest id add_many gave out

    async def get(self, contact_id: int) -> Contact | None:
        row = await self._session.get(ContactRow, contact_id, populate_existing=True)
        if row is None:
            return None
        tags = await self._tags({contact_id})
        return contact_from_row(row, tags.get(contact_id, []))

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
            **contact_values(contact),
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
        self._projection.touched([row.id])
        return contact

    async def update(
        self, contact: Contact, *, expected_version: int, changed: frozenset[str]
    ) -> bool:
        # Only what changed, as update_many does: setting a column rewrites its index entries
        # (and the search index's) even to the same value.
        assert contact.id is not None
        columns = _changed_columns(changed)
        values = {name: getattr(contact, name) for name in columns if name != "search_text"}
        if "search_text" in columns:
            await self._company_keys({contact.company_id} if contact.company_id else set())
            values["search_text"] = self._search_text(contact)
        result = await self._session.execute(
            sql_update(ContactRow)
            .where(ContactRow.id == contact.id, ContactRow.version == expected_version)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        if "tags" in changed:
            await self.set_tags(contact.id, contact.tags)
        if changed & REPORTED_FIELDS:
            self._projection.touched([contact.id])
        return True

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
        contacts = contacts_from_raw(found.values(), converters)
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
        ids = await next_ids(self._session, ContactRow, len(contacts), after=self._given_up_to)
        if ids:
            self._given_up_to = ids[-1]
        for contact, contact_id in zip(contacts, ids, strict=True):
            contact.id = contact_id
        rows = [
            (c.id, *contact_fields(c), text, operation_id)
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
        self._projection.created(contacts)

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
        self._projection.touched(w.contact.id for w in fresh if w.changed & REPORTED_FIELDS)
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

    async def move_stage_contents(self, move: BulkMove) -> int:
        """Set-based, however many contacts: the before-images for undo, the history rows, then
        the contacts, each one statement with the same condition."""
        where = in_stage(move.from_stage_id)
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
            # The before-images copy report rows: those of contacts this unit of work touched
            # before must be in step first (a no-op when, as usual, there are none).
            await self._projection.bring_in_step()
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
            insert(StageChangeRow).from_select(list(HISTORY_COLUMNS), history)
        )
        async with bulk.indexes_rebuilt(self._session, STAGE_INDEXES if rebuild else ()):
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
            await self._projection.moved_in_bulk(
                operation_id=move.operation_id,
                after_change_id=last_change,
                at=move.at,
                to_stage_id=move.to_stage_id,
                rebuild=rebuild,
            )
        else:
            self._projection.touched(moving)
        return int(result.rowcount)  # type: ignore[attr-defined]

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
        duplicate = DuplicateContact.among(contact, others)
        if duplicate is not None:
            raise duplicate


@lru_cache(maxsize=256)
def _changed_columns(changed: frozenset[str]) -> tuple[str, ...]:
    """The columns a contact update writes for these changed fields: theirs, the version and
    who updated the contact, and the search text (last) when the name or the company changed."""
    columns = [
        name for name in CONTACT_FIELDS if name in changed or name in ("version", "updated_by_id")
    ]
    searched = bool(changed & {"name", "company_id"})
    return (*columns, "search_text") if searched else tuple(columns)


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
