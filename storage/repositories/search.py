"""Finding contacts: the search index, scope and filter conditions, and the reads of
SqlContactRepository that take them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Text,
    bindparam,
    case,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Scope
from domain.model import ActivityKind, Contact
from domain.ports import ContactFilter, SearchCriteria
from domain.text import fold
from storage.models import ActivityRow, ContactRow, ContactTagRow, TagRow, UserRow
from storage.repositories.mapping import contact_from_row

# SQLite's FTS5 index of contacts.search_text (created by the migrations, kept by triggers, and
# for contacts an import creates by `add_many`).
CONTACT_SEARCH = table("contact_search", column("rowid", Integer), column("search_text", Text))


def in_stage(stage_id: int | None) -> ColumnElement[bool]:
    return ContactRow.stage_id.is_(None) if stage_id is None else ContactRow.stage_id == stage_id


def scope_filter(scope: Scope) -> ColumnElement[bool]:
    if scope.everything:
        return literal(True)
    conditions = [ContactRow.owner_id == scope.owner_id]
    if scope.team is not None:
        conditions.append(
            ContactRow.owner_id.in_(select(UserRow.id).where(UserRow.team == scope.team))
        )
    return or_(*conditions)


# Built once: every card and search reads it.
_TAGS_OF_CONTACTS = (
    select(ContactTagRow.contact_id, TagRow.name)
    .join(TagRow, TagRow.id == ContactTagRow.tag_id)
    .where(ContactTagRow.contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(TagRow.name)
)


class SqlContactSearch:
    """Contacts found by words, identifiers, filters and the reader's scope; the
    writes of SqlContactRepository read through it too."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

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
            query = select(ContactRow).where(or_(*exact), scope_filter(scope))
            for row in await self._session.scalars(query.order_by(ContactRow.id.desc())):
                rows[row.id] = row
        if criteria.words and len(rows) < wanted:
            query = self._word_match(criteria.words).where(scope_filter(scope))
            for row in await self._session.scalars(query.limit(wanted)):
                rows.setdefault(row.id, row)
        page = list(rows.values())[offset:wanted]
        tags = await self._tags({row.id for row in page})
        return [contact_from_row(row, tags.get(row.id, [])) for row in page]

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
        conditions = [scope_filter(scope)]
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

    async def count_by_stage(self, where: ContactFilter, scope: Scope) -> dict[int | None, int]:
        rows = await self._session.execute(
            select(ContactRow.stage_id, func.count())
            .where(*self._matching(where, scope))
            .group_by(ContactRow.stage_id)
        )
        return dict(rows.all())

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
        return [contact_from_row(row, tags.get(row.id, [])) for row in rows]

    async def _tags(self, contact_ids: set[int]) -> dict[int, list[str]]:
        if not contact_ids:
            return {}
        rows = await self._session.execute(_TAGS_OF_CONTACTS, {"ids": list(contact_ids)})
        tags: dict[int, list[str]] = {}
        for contact_id, name in rows:
            tags.setdefault(contact_id, []).append(name)
        return tags
