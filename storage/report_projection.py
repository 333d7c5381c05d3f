"""The upkeep of the report tables (docs/reports.md, "How the database keeps up"): a
`ReportProjection` per unit of work, which repositories tell what they changed, writes the rows
`storage.report_rows` computes, in the same transaction. `recount` is the recount from scratch
the tests compare with; recategorizing a stage rewrites the entries that change
(`ReportProjection.recategorized`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    SQLColumnExpression,
    String,
    and_,
    case,
    cast,
    delete,
    exists,
    extract,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.model import Category, Contact, Source, Stage, StageChange
from domain.reports import epoch_seconds
from storage import bulk
from storage.models import (
    ActivityRow,
    ContactRow,
    OperationItemRow,
    ReportContactRow,
    ReportMoveRow,
    ReportStayBlockRow,
    StageChangeRow,
    StageRow,
)
from storage.report_rows import (
    BLOCK,
    CONTACT_COLUMNS,
    EXACT,
    LAST_BITS,
    LOST,
    MAX_BUCKET,
    MOVE_COLUMNS,
    NO_BUCKET,
    NO_STAGE,
    PER_DOUBLING,
    STAY_BLOCK_COLUMNS,
    STAY_BLOCK_KEY,
    WON,
    Categories,
    Change,
    Facts,
    NewContact,
    block_of,
    rows_of,
    rows_of_new,
    stay_block_sums,
)

CHUNK = 5000  # contacts refreshed together
FEW_TIMES = 16  # distinct times of appended rows worth a statement each


def in_buckets(
    column: SQLColumnExpression[int], *extra: int, top: int = MAX_BUCKET
) -> ColumnElement[bool]:
    """The length buckets up to `top`, written out (a constant list compiles once)."""
    values = ", ".join(str(b) for b in (*extra, *range(top + 1)))
    return column.op("IN")(literal_column(f"({values})"))


def bucket_sql(seconds: SQLColumnExpression[Any]) -> ColumnElement[int]:
    """`bucket` in SQL, identically on SQLite and PostgreSQL (integer arithmetic only): a
    binary search over the lengths' bit counts, a few comparisons a row."""
    # (below, formula) for each range of lengths, in order
    pieces: list[tuple[int, Any]] = [(0, literal(0)), (EXACT, seconds)]
    for bits in range(5, LAST_BITS + 1):
        first = EXACT + (bits - 5) * PER_DOUBLING - PER_DOUBLING
        pieces.append((2**bits, seconds // 2 ** (bits - 4) + first))

    def search(low: int, high: int) -> Any:
        """The bucket of a length known to be below pieces[high][0] when high < len(pieces)."""
        if low == high:
            return pieces[low][1] if low < len(pieces) else literal(MAX_BUCKET)
        middle = (low + high) // 2
        return case(
            (seconds < pieces[middle][0], search(low, middle)), else_=search(middle + 1, high)
        )

    found: ColumnElement[int] = search(0, len(pieces))
    return found


def seconds(moment: SQLColumnExpression[Any], dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a stored time, truncated, identically on both databases."""
    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", moment)), BigInteger)
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff', and strftime('%s') would round the fraction.
    return cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer)


def _entry_sql(
    known: Categories, to: SQLColumnExpression[Any], came_from: SQLColumnExpression[Any]
) -> ColumnElement[int]:
    """`Categories.entry` in SQL, for a move's columns (a stage id, 0 or NULL for none)."""

    def entering(ids: frozenset[int]) -> ColumnElement[bool]:
        return and_(to.in_(ids), or_(came_from.is_(None), came_from.not_in(ids)))

    return case((entering(known.won), WON), (entering(known.lost), LOST), else_=0)


_VARIES = object()
# The indexes of report_contacts a move rewrites: the path's, and the idle index, which loses
# each contact the move touches for the first time.
_MOVED_INDEXES = ("ix_report_contacts_path", "ix_report_contacts_idle")


def _categories_of(stages: Iterable[tuple[int, Category]]) -> Categories:
    pairs = list(stages)
    return Categories(
        won=frozenset(i for i, c in pairs if c is Category.WON),
        lost=frozenset(i for i, c in pairs if c is Category.LOST),
    )


class ReportProjection:
    """The report rows of one unit of work. Repositories say which contacts they touched
    (`touched`), and the unit of work brings those contacts' rows in step once, at commit
    (`bring_in_step`): a stage button writes the contact and then its history row, and one
    recomputation is cheaper than one per statement. The bulk paths are set-based and write
    at once, when that is what makes them fast (`created` with `appended`, `moved_in_bulk`,
    `unmoved`, `recategorized`)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._touched: set[int] = set()  # contacts to recompute at commit
        self._new: dict[int, NewContact] = {}  # created here in bulk, with their history
        self._categories: Categories | None = None

    def touched(self, contact_ids: Iterable[int | None]) -> None:
        """Contacts whose report rows a write made stale; `bring_in_step` recomputes them once
        for the whole unit of work (an import touches a contact in several statements too)."""
        self._touched.update(i for i in contact_ids if i is not None)

    async def bring_in_step(self) -> None:
        """Write what `created`, `appended` and `touched` remembered (the unit of work calls it
        before committing)."""
        new, self._new = self._new, {}
        touched, self._touched = self._touched, set()
        waiting = [n for i, n in new.items() if i not in touched]
        if waiting:
            await _insert(self._session, *rows_of_new(waiting, await self.categories()))
        if touched:
            await self._recompute_contacts(sorted(touched))

    def forget(self) -> None:
        """After a rollback or a commit: what was remembered is written or undone, and others may
        change the stages before the next transaction."""
        self._touched.clear()
        self._new.clear()
        self._categories = None

    async def recount(self) -> None:
        """Recompute the report rows of every contact from their data."""
        known = await self.categories()
        self._new.clear()
        self._touched.clear()
        session = self._session
        await session.execute(delete(ReportMoveRow))
        await session.execute(delete(ReportStayBlockRow))
        await session.execute(delete(ReportContactRow))
        after = 0
        while True:
            ids = list(
                await session.scalars(
                    select(ContactRow.id)
                    .where(ContactRow.id > after)
                    .order_by(ContactRow.id)
                    .limit(CHUNK)
                )
            )
            if not ids:
                return
            await _recompute(session, ids, known, replace=False)
            after = ids[-1]

    async def _recompute_contacts(self, ordered: list[int]) -> None:
        known = await self.categories()
        for contact_id in ordered:
            self._new.pop(contact_id, None)
        for start in range(0, len(ordered), CHUNK):
            await _recompute(self._session, ordered[start : start + CHUNK], known, replace=True)

    async def categories(self) -> Categories:
        """The won and the lost stages, read once per transaction until a stage is added or
        changed (`stages_changed`): an import asks for every batch, and a read waits for the
        writes sent before it (storage.pipeline)."""
        if self._categories is None:
            rows = await self._session.execute(select(StageRow.id, StageRow.category))
            self._categories = _categories_of((i, Category(c)) for i, c in rows)
        return self._categories

    def stages_changed(self) -> None:
        self._categories = None

    def stages_read(self, stages: Iterable[Stage]) -> None:
        """Every stage, as the unit of work read them for another reason: no need to read the
        categories again."""
        if self._categories is None:
            self._categories = _categories_of((s.id, s.category) for s in stages if s.id)

    def created(self, contacts: Iterable[Contact]) -> None:
        """Remember contacts inserted in bulk in this unit of work: their report rows are computed
        from what was written (with `appended`, their first history rows), without reading back."""
        seconds_of = cache(epoch_seconds)  # most rows of an import share the import's own time
        for contact in contacts:
            assert contact.id is not None
            facts = Facts(
                contact.id,
                contact.owner_id,
                contact.source,
                contact.stage_id,
                seconds_of(contact.created_at),
            )
            self._new[contact.id] = (facts, contact.created_at, [])

    async def appended(self, changes: Sequence[StageChange]) -> None:
        """History rows just added in bulk (with their ids). Contacts created in this unit of
        work get their report rows now, from what was written (worked out while the database
        runs the history's insert, in a pipeline); the others are appended set-based, or
        refreshed before the commit (a contact changed again later in the unit of work is
        refreshed then, rows replaced)."""
        contact_rows, move_rows, others = self._rows_appended(changes, await self.categories())
        await _insert(self._session, contact_rows, move_rows)
        await self._append_or_refresh(changes, others)

    def _rows_appended(
        self, changes: Sequence[StageChange], known: Categories
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[int]]:
        """The report rows of the contacts created in this unit of work that `changes` belong to,
        and the other contacts the changes belong to."""
        others = []
        done: set[int] = set()
        seconds_of = cache(epoch_seconds)
        # In history order, to the microsecond, when a batch holds several rows of a contact.
        once_each = len({change.contact_id for change in changes}) == len(changes)
        new = self._new  # a local: this loop runs for every row of an import
        for change in changes if once_each else sorted(changes, key=attrgetter("at", "id")):
            assert change.id is not None
            item = new.get(change.contact_id)
            if item is None:
                others.append(change.contact_id)
                continue
            _, created_at, history = item
            history.append(
                Change(
                    change.id,
                    seconds_of(change.at),
                    change.to_stage_id,
                    change.from_stage_id,
                    change.source is Source.MANUAL,
                    change.at > created_at,
                )
            )
            done.add(change.contact_id)
        contact_rows, move_rows = rows_of_new([new.pop(i) for i in done], known)
        return contact_rows, move_rows, others

    async def _append_or_refresh(
        self, changes: Sequence[StageChange], contact_ids: list[int]
    ) -> None:
        """The history rows of these contacts go at the end of their report rows set-based, unless
        a contact has several of them, or one made by a person (a response): those are refreshed."""
        if not contact_ids:
            return
        counts = Counter(contact_ids)
        appending = {
            c.contact_id: c
            for c in changes
            if c.id is not None
            and counts.get(c.contact_id) == 1
            and c.source is not Source.MANUAL
            and c.contact_id not in self._touched  # recomputed at commit anyway
        }
        self.touched(i for i in contact_ids if i not in appending)
        # Rows of one time (an import's own, most often) are appended with that time as a constant:
        # the database would otherwise work out the seconds of each row's time once per use.
        by_time: dict[datetime | None, list[int]] = {}
        for change in appending.values():
            by_time.setdefault(change.at, []).append(change.id or 0)
        if len(by_time) > FEW_TIMES:
            by_time = {None: [i for ids in by_time.values() for i in ids]}
        for at, rows in by_time.items():
            for start in range(0, len(rows), CHUNK):
                await self._append(StageChangeRow.id.in_(rows[start : start + CHUNK]), at)

    async def moved_in_bulk(
        self,
        *,
        operation_id: int,
        after_change_id: int,
        at: datetime,
        to_stage_id: int | None,
        rebuild: bool = False,
    ) -> None:
        """Bring in step the contacts of a bulk move: the history rows of `operation_id` with
        ids above `after_change_id`, one per contact, all dated `at`, moving to `to_stage_id`
        and made by a system path. `rebuild`: the move is a large share of the contacts, for
        which the indexes it rewrites are created anew rather than updated
        (bulk.indexes_rebuilt)."""
        h = StageChangeRow
        rows = and_(h.operation_id == operation_id, h.id > after_change_id)
        new_moves = None
        if self._session.get_bind().dialect.name == "sqlite":
            # SQLite has one writer at a time, holding the database from BEGIN IMMEDIATE to the
            # commit: every history row (and report_moves row) above the operation's first one is
            # one of its rows, read in key order instead of looked up one by one.
            rows = h.id > after_change_id
            new_moves = ReportMoveRow.change_id > after_change_id
        await self._append(
            rows,
            at,
            new_moves=new_moves,
            to_stage_id=to_stage_id,
            one_moment=True,
            rebuilt=_MOVED_INDEXES if rebuild else (),
        )

    async def _append(
        self,
        rows: ColumnElement[bool],
        at: datetime | None,
        *,
        new_moves: ColumnElement[bool] | None = None,
        to_stage_id: object = _VARIES,  # a stage id, None, or _VARIES
        one_moment: bool = False,
        rebuilt: Sequence[str] = (),
    ) -> None:
        """Set-based, without reading any history: each of the history rows `rows` (at most one per
        contact, none made by a person in chat) goes at the end of its contact's history, where
        report_contacts says what the contact's last row was. A contact with a row dated after the
        new one is refreshed the slow way instead. `at`: the time of every row, when they share it;
        `new_moves`: the report_moves rows this adds, when the caller can name them more cheaply
        than by their history rows; `to_stage_id`: the stage every row moves to, when they share
        it (a move into an open stage enters neither won nor lost, which spares every row the
        test); `one_moment`: the rows are nearly all the history rows made at `at` (a bulk move's),
        whose stays are added up from that moment of the stay index (an import's batches, made at
        one moment too, would each read the stays of all batches before); `rebuilt`: indexes of
        report_contacts to create anew after the update."""
        rc, h, c = ReportContactRow, StageChangeRow, ContactRow
        session = self._session
        dialect = session.get_bind().dialect.name
        at_s: Any = literal(epoch_seconds(at)) if at is not None else seconds(h.at, dialect)
        # After the last row for sure; within its second, its microseconds would have to be read.
        in_order = or_(rc.last_at_s.is_(None), rc.last_at_s < at_s)
        late = await session.scalars(
            select(rc.contact_id).join(h, h.contact_id == rc.contact_id).where(rows, ~in_order)
        )
        self.touched(late)
        known = await self.categories()
        entering = to_stage_id is _VARIES or to_stage_id in known.won | known.lost
        entry = _entry_sql(known, h.to_stage_id, h.from_stage_id) if entering else literal(0)
        stay = at_s - rc.last_at_s
        has_stay = and_(rc.last_stage_id != NO_STAGE, rc.last_at_s.is_not(None))
        to: Any = func.coalesce(h.to_stage_id, NO_STAGE)
        stage: Any = cast(h.to_stage_id, String)  # as the path writes it
        if to_stage_id is not _VARIES:
            to = literal(NO_STAGE if to_stage_id is None else to_stage_id)
            stage = literal(str(to_stage_id))
        new_rows = (
            select(
                h.id,
                h.contact_id,
                rc.owner_id,
                rc.created_s,
                at_s,
                to,
                func.coalesce(h.from_stage_id, NO_STAGE),
                and_(h.from_stage_id.is_(None), at_s <= rc.created_s),
                case((has_stay, rc.last_stage_id), else_=NO_STAGE),
                case((has_stay, stay)),
                case((has_stay, bucket_sql(stay)), else_=NO_BUCKET),
                entry,
                case((entry == WON, rc.last_won_s), (entry == LOST, rc.last_lost_s)),
                at_s - rc.created_s,
                bucket_sql(at_s - rc.created_s),
            )
            .join(rc, rc.contact_id == h.contact_id)
            .where(rows, in_order)
        )
        await session.execute(insert(ReportMoveRow).from_select(list(MOVE_COLUMNS), new_rows))
        if new_moves is None:
            new_moves = ReportMoveRow.change_id.in_(select(h.id).where(rows))
        moment = epoch_seconds(at) if one_moment and at is not None else None
        await _move_stay_blocks(session, new_moves, 1, at_s=moment)
        path = func.ltrim(func.replace(" " + rc.path + " ", " " + stage + " ", " ") + stage)
        # Touched: dated after the creation, to the microsecond; the contact's own time is read
        # only when both fall in the same second.
        after_creation = exists().where(c.id == rc.contact_id, c.created_at < h.at)
        touched = case(
            (rc.touched, rc.touched),
            (rc.created_s < at_s, True),
            (rc.created_s > at_s, False),
            else_=after_creation,
        )
        values: dict[str, Any] = {
            "stage_id": to,
            "last_stage_id": to,
            "last_at_s": at_s,
            "touched": touched,
        }
        entered = func.coalesce(rc.entered_s, at_s)
        if to_stage_id is _VARIES:
            values["path"] = case((h.to_stage_id.is_(None), rc.path), else_=path)
            values["entered_s"] = case((h.to_stage_id.is_(None), rc.entered_s), else_=entered)
        elif to_stage_id is not None:  # a move to no stage changes neither path nor first entry
            values["path"] = path
            values["entered_s"] = entered
        if entering:
            values["last_won_s"] = case((entry == WON, at_s), else_=rc.last_won_s)
            values["last_lost_s"] = case((entry == LOST, at_s), else_=rc.last_lost_s)
        async with bulk.indexes_rebuilt(session, rebuilt):
            await session.execute(
                update(rc).where(rc.contact_id == h.contact_id, rows, in_order).values(values),
                execution_options={"synchronize_session": False},
            )

    async def unmoved(self, operation_id: int, *, rebuild: bool = False) -> set[int]:
        """Before an undo deletes a bulk move's history rows: the report rows of the contacts it
        reverts (unchanged since), whose moved row is still their latest, go back to what the move
        kept of them; the row's report_moves row goes with it (knowing the stay it ended, hence the
        row before, and the previous entry). Returns those contacts: the others are refreshed.
        `rebuild`: as for `moved_in_bulk`."""
        i, h, m, c, rc = (
            OperationItemRow,
            StageChangeRow,
            ReportMoveRow,
            ContactRow,
            ReportContactRow,
        )
        after = aliased(StageChangeRow)
        later = exists().where(
            after.contact_id == h.contact_id,
            or_(after.at > h.at, and_(after.at == h.at, after.id > h.id)),
        )
        restorable = (
            i.operation_id == operation_id,
            i.before_report_path.is_not(None),
            c.id == i.contact_id,
            c.version == i.after_version,
            h.operation_id == operation_id,
            h.contact_id == i.contact_id,
            m.change_id == h.id,
            ~later,
        )
        session = self._session
        async with bulk.indexes_rebuilt(session, _MOVED_INDEXES if rebuild else ()):
            restored = await session.scalars(
                update(rc)
                .where(rc.contact_id == i.contact_id, *restorable)
                .values(
                    stage_id=func.coalesce(i.before_stage_id, NO_STAGE),
                    path=i.before_report_path,
                    touched=i.before_report_touched,
                    entered_s=i.before_report_entered_s,
                    last_at_s=i.before_report_last_at_s,
                    last_stage_id=m.stay_stage_id,
                    last_won_s=case((m.entry == WON, m.prev_entry_s), else_=rc.last_won_s),
                    last_lost_s=case((m.entry == LOST, m.prev_entry_s), else_=rc.last_lost_s),
                )
                .returning(rc.contact_id),
                execution_options={"synchronize_session": False},
            )
            return set(restored)

    async def recategorized(self, stage_id: int) -> None:
        """After the stage's category changed: which rows enter won or lost changes for the rows
        into or out of it, and with them the previous entries and latest entries of the contacts
        that have such rows. Set-based, writing only what changes (a recategorization touches a
        few of a contact's rows, and rewriting them all would cost minutes on a million)."""
        m, rc = ReportMoveRow, ReportContactRow
        session = self._session
        entry = _entry_sql(await self.categories(), m.to_stage_id, m.from_stage_id)
        touching = or_(m.to_stage_id == stage_id, m.from_stage_id == stage_id)
        await session.execute(
            update(m).where(touching, m.entry != entry).values(entry=entry),
            execution_options={"synchronize_session": False},
        )
        contacts = select(m.contact_id).where(touching).distinct().scalar_subquery()
        h = StageChangeRow
        entries = (
            select(
                m.change_id,
                func.lag(m.at_s)
                .over(partition_by=(m.contact_id, m.entry), order_by=(h.at, h.id))
                .label("previous"),
            )
            .join(h, h.id == m.change_id)
            .where(m.entry > 0, m.contact_id.in_(contacts))
            .subquery()
        )
        await session.execute(
            update(m)
            .where(
                m.change_id == entries.c.change_id,
                m.prev_entry_s.is_distinct_from(entries.c.previous),
            )
            .values(prev_entry_s=entries.c.previous),
            execution_options={"synchronize_session": False},
        )
        await session.execute(
            update(m)
            .where(touching, m.entry == 0, m.prev_entry_s.is_not(None))
            .values(prev_entry_s=None),
            execution_options={"synchronize_session": False},
        )
        latest = (
            select(
                m.contact_id,
                func.max(case((m.entry == WON, m.at_s))).label("won"),
                func.max(case((m.entry == LOST, m.at_s))).label("lost"),
            )
            .where(m.contact_id.in_(contacts))
            .group_by(m.contact_id)
            .subquery()
        )
        await session.execute(
            update(rc)
            .where(
                rc.contact_id == latest.c.contact_id,
                or_(
                    rc.last_won_s.is_distinct_from(latest.c.won),
                    rc.last_lost_s.is_distinct_from(latest.c.lost),
                ),
            )
            .values(last_won_s=latest.c.won, last_lost_s=latest.c.lost),
            execution_options={"synchronize_session": False},
        )

    async def forget_history(self, changes: ColumnElement[bool]) -> None:
        """Before history rows go (and their report_moves rows with them, by the foreign key): the
        stays they ended leave report_stay_blocks. `changes`: a condition on report_moves."""
        await _move_stay_blocks(self._session, changes, -1)


async def recount(session: AsyncSession) -> None:
    """The report rows of every contact, recomputed from their data (after the migrations that
    make the tables; the tests compare the tables kept by every write with it)."""
    await ReportProjection(session).recount()


async def _recompute(
    session: AsyncSession, ids: list[int], known: Categories, *, replace: bool
) -> None:
    dialect = session.get_bind().dialect.name
    c, h, a = ContactRow, StageChangeRow, ActivityRow
    facts = [
        Facts(*row)
        for row in await session.execute(
            select(c.id, c.owner_id, c.source, c.stage_id, seconds(c.created_at, dialect)).where(
                c.id.in_(ids)
            )
        )
    ]
    history: dict[int, list[Change]] = {}
    for contact_id, change_id, at_s, to, came_from, manual, after in await session.execute(
        select(
            h.contact_id,
            h.id,
            seconds(h.at, dialect),
            h.to_stage_id,
            h.from_stage_id,
            h.source == Source.MANUAL.value,
            h.at > c.created_at,
        )
        .join(c, c.id == h.contact_id)
        .where(h.contact_id.in_(ids))
        .order_by(h.contact_id, h.at, h.id)
    ):
        history.setdefault(contact_id, []).append(
            Change(change_id, at_s, to, came_from, bool(manual), bool(after))
        )
    first_activity = dict(
        (
            await session.execute(
                select(a.contact_id, seconds(func.min(a.at), dialect))
                .join(c, c.id == a.contact_id)
                .where(a.contact_id.in_(ids), a.at > c.created_at)
                .group_by(a.contact_id)
            )
        ).all()
    )
    if replace:
        # A contact's report_moves rows are those of its history rows (deleting a history row
        # deletes its report row), so they are found by the history's ids, without an index.
        changes = [change.change_id for rows in history.values() for change in rows]
        for start in range(0, len(changes), CHUNK):
            chunk = changes[start : start + CHUNK]
            await _move_stay_blocks(session, ReportMoveRow.change_id.in_(chunk), -1)
            await session.execute(delete(ReportMoveRow).where(ReportMoveRow.change_id.in_(chunk)))
        await session.execute(delete(ReportContactRow).where(ReportContactRow.contact_id.in_(ids)))
    contact_rows, move_rows = [], []
    for fact in facts:
        row, moves = rows_of(
            fact, history.get(fact.contact_id, []), first_activity.get(fact.contact_id), known
        )
        contact_rows.append(row)
        move_rows += moves
    await _insert(session, contact_rows, move_rows)


async def _insert(
    session: AsyncSession, contact_rows: list[tuple[Any, ...]], move_rows: list[tuple[Any, ...]]
) -> None:
    if contact_rows:
        await bulk.insert(session, ReportContactRow, CONTACT_COLUMNS, contact_rows)
    if move_rows:
        await bulk.insert(session, ReportMoveRow, MOVE_COLUMNS, move_rows)
        await _add_stay_blocks(session, move_rows)


async def _add_stay_blocks(session: AsyncSession, move_rows: Sequence[tuple[Any, ...]]) -> None:
    """report_stay_blocks gains the stays these new report_moves rows end."""
    rows = stay_block_sums(move_rows)
    if rows:
        await _upsert_stay_blocks(session, rows)


async def _upsert_stay_blocks(session: AsyncSession, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add (stage, bucket, block, owner, n, total) to report_stay_blocks, in key order (so that two
    transactions on PostgreSQL lock the rows they share in the same order)."""
    d = ReportStayBlockRow
    for start in range(0, len(rows), CHUNK):
        values = [
            dict(zip(STAY_BLOCK_COLUMNS, row, strict=True)) for row in rows[start : start + CHUNK]
        ]
        await _add_to_blocks(session, _dialect_insert(session)(d).values(values))


async def _move_stay_blocks(
    session: AsyncSession, moves: ColumnElement[bool], sign: int, *, at_s: int | None = None
) -> None:
    """Add (sign 1) or take away (-1) the stays of the report_moves rows `moves` select, in key
    order (see `_upsert_stay_blocks`). `at_s`: they were all made at that moment (a bulk
    move's), and are read from the stay index by stage and bucket at that moment, in its order
    (owner first), without sorting them; the lists of stages and buckets let the database seek
    each pair's moment."""
    m, d = ReportMoveRow, ReportStayBlockRow
    if at_s is None:
        block: Any = case((m.at_s < 0, -1), else_=m.at_s // BLOCK)
        where: tuple[ColumnElement[bool], ...] = (moves, m.stay_stage_id != NO_STAGE)
        key = (m.stay_stage_id, m.stay_bucket, block, m.owner_id)
    else:
        block = literal(block_of(at_s))
        where = (
            moves,
            m.stay_stage_id.in_(select(StageRow.id)),
            in_buckets(m.stay_bucket),
            m.at_s == at_s,
        )
        key = (m.stay_stage_id, m.stay_bucket, m.at_s, m.owner_id)
    grouped = (
        select(
            m.stay_stage_id,
            m.stay_bucket,
            block,
            m.owner_id,
            sign * func.count(),
            sign * func.sum(m.stay_s),
        )
        .where(*where)
        .group_by(*key)
        .order_by(*key)
    )
    await _add_to_blocks(
        session, _dialect_insert(session)(d).from_select(list(STAY_BLOCK_COLUMNS), grouped)
    )


async def _add_to_blocks(session: AsyncSession, upsert: Any) -> None:
    """Run an INSERT of block rows that adds to the rows already there."""
    d = ReportStayBlockRow
    excluded = upsert.excluded
    await bulk.execute(
        session,
        upsert.on_conflict_do_update(
            index_elements=STAY_BLOCK_KEY,
            set_={"n": d.n + excluded.n, "total_s": d.total_s + excluded.total_s},
        ),
    )


def _dialect_insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql_insert if dialect == "postgresql" else sqlite_insert
