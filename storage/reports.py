"""The report tables (docs/reports.md, "How the database keeps up"): how their rows are computed
from contacts, stage_changes and activities, and kept in step by every write.

`report_contacts` has a row per contact, `report_moves` one per history row, and
`report_stay_blocks` the stays that ended per block of 32 days. Every write that changes a
contact's history, activities, owner, source or stage brings that contact's rows in step in
the same transaction; `refresh(session, None)` is the recount from scratch the tests compare
with. Stage ids are kept as they are, so positions still apply when a report runs; which rows
enter the won or the lost category is worked out with the categories as they are now, and
recategorizing a stage rewrites the entries that change (`recategorized`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import attrgetter
from typing import Any, NamedTuple

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

from domain.model import Category, Contact, Source, StageChange
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

# Lengths are sorted into buckets for exact medians: a report counts values per bucket, finds the
# bucket holding the middle value, and sorts only that bucket's values. Up to 16 s a bucket per
# second, then 8 per doubling (each about 9 % wide); monotone, so the middle value's bucket is
# where the running count passes the middle.
_EXACT = 16
_PER_DOUBLING = 8
_LAST_BITS = 48  # lengths up to 2**48 s (8.9 million years)
NO_BUCKET = -1


def bucket(seconds: int) -> int:
    """The bucket of a length in seconds (0 for a negative one)."""
    if seconds < _EXACT:
        return max(seconds, 0)
    bits = seconds.bit_length()
    if bits > _LAST_BITS:
        return MAX_BUCKET
    return _EXACT + (bits - 5) * _PER_DOUBLING + (seconds >> (bits - 4)) - _PER_DOUBLING


MAX_BUCKET = _EXACT + (_LAST_BITS - 4) * _PER_DOUBLING - 1


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
    pieces: list[tuple[int, Any]] = [(0, literal(0)), (_EXACT, seconds)]
    for bits in range(5, _LAST_BITS + 1):
        first = _EXACT + (bits - 5) * _PER_DOUBLING - _PER_DOUBLING
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


NO_OWNER = 0
NO_STAGE = 0
WON, LOST = 1, 2  # report_moves.entry
CHUNK = 5000  # contacts refreshed together
FEW_TIMES = 16  # distinct times of appended rows worth a statement each

STALE = "stale_report_contacts"  # session.info: contacts to refresh before the commit
FRESH = "fresh_report_contacts"  # session.info: contacts created here, with their history
CATEGORIES = "stage_categories"  # session.info: what `categories` read

CONTACT_COLUMNS = (
    "contact_id",
    "owner_id",
    "source",
    "stage_id",
    "created_s",
    "entered_s",
    "path",
    "touched",
    "responded_s",
    "response_bucket",
    "last_stage_id",
    "last_at_s",
    "last_won_s",
    "last_lost_s",
)
MOVE_COLUMNS = (
    "change_id",
    "contact_id",
    "owner_id",
    "created_s",
    "at_s",
    "to_stage_id",
    "from_stage_id",
    "creation",
    "stay_stage_id",
    "stay_s",
    "stay_bucket",
    "entry",
    "prev_entry_s",
    "age_s",
    "age_bucket",
)

STAY_BLOCK_COLUMNS = ("stay_stage_id", "stay_bucket", "block", "owner_id", "n", "total_s")
STAY_BLOCK_KEY = STAY_BLOCK_COLUMNS[:4]


class Facts(NamedTuple):  # a tuple: an import makes a million of them
    """What a contact's report rows read of the contact itself."""

    contact_id: int
    owner_id: int | None
    source: str | None
    stage_id: int | None
    created_s: int


class Change(NamedTuple):
    """A history row as the report rows read it, given in history order (time, then id)."""

    change_id: int
    at_s: int
    to_stage_id: int | None
    from_stage_id: int | None
    manual: bool  # made by a person in chat: a response
    after_creation: bool  # dated after the contact's creation (to the microsecond)


@dataclass(frozen=True, slots=True)
class Categories:
    won: frozenset[int]
    lost: frozenset[int]

    def entry(self, to_stage_id: int | None, from_stage_id: int | None) -> int:
        """WON or LOST when the move enters that category from outside it, else 0."""
        if to_stage_id in self.won:
            return 0 if from_stage_id in self.won else WON
        if to_stage_id in self.lost:
            return 0 if from_stage_id in self.lost else LOST
        return 0


def rows_of(
    facts: Facts,
    history: Sequence[Change],
    first_activity_s: int | None,
    categories: Categories,
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The report_contacts row (CONTACT_COLUMNS) and report_moves rows (MOVE_COLUMNS) of a
    contact, from its history in history order and its first activity after its creation."""
    if len(history) == 1 and first_activity_s is None:
        return _rows_of_one(facts, history[0], categories)
    return _rows_of_history(facts, history, first_activity_s, categories)


def _rows_of_history(
    facts: Facts,
    history: Sequence[Change],
    first_activity_s: int | None,
    categories: Categories,
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    owner = NO_OWNER if facts.owner_id is None else facts.owner_id
    created = facts.created_s
    touched = first_activity_s is not None
    responded = first_activity_s
    entered: int | None = None
    path: dict[int, None] = {}  # stages in order of last entry
    latest: dict[int, int | None] = {WON: None, LOST: None}
    last_stage, last_at = NO_STAGE, None
    moves: list[tuple[Any, ...]] = []
    for change in history:
        at = change.at_s
        if change.after_creation:
            touched = True
            if change.manual and (responded is None or at < responded):
                responded = at
        to = change.to_stage_id
        if to is not None:
            if entered is None:
                entered = at
            path.pop(to, None)
            path[to] = None
        entry = categories.entry(to, change.from_stage_id)
        previous = latest[entry] if entry else None
        if entry:
            latest[entry] = at
        stay: int | None = None
        if last_stage != NO_STAGE and last_at is not None:
            stay = at - last_at
        moves.append(
            (
                change.change_id,
                facts.contact_id,
                owner,
                created,
                at,
                NO_STAGE if to is None else to,
                NO_STAGE if change.from_stage_id is None else change.from_stage_id,
                change.from_stage_id is None and at <= created,
                last_stage if stay is not None else NO_STAGE,
                stay,
                NO_BUCKET if stay is None else bucket(stay),
                entry,
                previous,
                at - created,
                bucket(at - created),
            )
        )
        last_stage, last_at = (NO_STAGE if to is None else to), at
    contact = (
        facts.contact_id,
        owner,
        facts.source,
        NO_STAGE if facts.stage_id is None else facts.stage_id,
        created,
        entered,
        " ".join(map(str, path)),
        touched,
        responded,
        NO_BUCKET if responded is None else bucket(responded - created),
        last_stage,
        last_at,
        latest[WON],
        latest[LOST],
    )
    return contact, moves


def _rows_of_one(
    facts: Facts, change: Change, categories: Categories
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """`rows_of` of a contact with one history row and no activity, as most contacts an import
    creates: the same rows, written out (a million of them cost seconds through the loop)."""
    owner = NO_OWNER if facts.owner_id is None else facts.owner_id
    created, at = facts.created_s, change.at_s
    to, came_from = change.to_stage_id, change.from_stage_id
    entry = categories.entry(to, came_from)
    responded = at if change.after_creation and change.manual else None
    last_stage = NO_STAGE if to is None else to
    move = (
        change.change_id,
        facts.contact_id,
        owner,
        created,
        at,
        last_stage,
        NO_STAGE if came_from is None else came_from,
        came_from is None and at <= created,
        NO_STAGE,
        None,
        NO_BUCKET,
        entry,
        None,
        at - created,
        bucket(at - created),
    )
    contact = (
        facts.contact_id,
        owner,
        facts.source,
        NO_STAGE if facts.stage_id is None else facts.stage_id,
        created,
        None if to is None else at,
        "" if to is None else str(to),
        change.after_creation,
        responded,
        NO_BUCKET if responded is None else bucket(responded - created),
        last_stage,
        at,
        at if entry == WON else None,
        at if entry == LOST else None,
    )
    return contact, [move]


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


async def categories(session: AsyncSession) -> Categories:
    """The won and the lost stages, read once per transaction until a stage is added or
    changed (`stages_changed`): an import asks for every batch, and a read waits for the
    writes sent before it (storage.pipeline)."""
    known: Categories | None = session.info.get(CATEGORIES)
    if known is None:
        rows = (await session.execute(select(StageRow.id, StageRow.category))).all()
        known = Categories(
            won=frozenset(i for i, c in rows if c == Category.WON.value),
            lost=frozenset(i for i, c in rows if c == Category.LOST.value),
        )
        session.info[CATEGORIES] = known
    return known


def stages_changed(session: AsyncSession) -> None:
    session.info.pop(CATEGORIES, None)


async def refresh(session: AsyncSession, contacts: Sequence[int] | None) -> None:
    """Recompute the report rows of these contacts (of all of them for None) from their data."""
    known = await categories(session)
    fresh: dict[int, Any] = session.info.get(FRESH, {})
    if contacts is None:
        fresh.clear()
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
    ordered = sorted(set(contacts))
    for contact_id in ordered:
        fresh.pop(contact_id, None)
    for start in range(0, len(ordered), CHUNK):
        await _recompute(session, ordered[start : start + CHUNK], known, replace=True)


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


BLOCK = 32 * 86_400  # report_stay_blocks: stays counted per 32 days (UTC, from 1970)


def _block(at_s: int) -> int:
    """The block of a moment; times before 1970 all go to block -1, which no report reads."""
    return at_s // BLOCK if at_s >= 0 else -1


_STAY = MOVE_COLUMNS.index("stay_stage_id")
_STAY_S = MOVE_COLUMNS.index("stay_s")
_BUCKET = MOVE_COLUMNS.index("stay_bucket")
_AT = MOVE_COLUMNS.index("at_s")
_OWNER = MOVE_COLUMNS.index("owner_id")


async def _add_stay_blocks(session: AsyncSession, move_rows: Sequence[tuple[Any, ...]]) -> None:
    """report_stay_blocks gains the stays these new report_moves rows end."""
    blocks: dict[tuple[int, int, int, int], list[int]] = {}
    for row in move_rows:
        if row[_STAY] == NO_STAGE:
            continue
        key = (row[_STAY], row[_BUCKET], _block(row[_AT]), row[_OWNER])
        figures = blocks.setdefault(key, [0, 0])
        figures[0] += 1
        figures[1] += row[_STAY_S]
    if blocks:
        rows = [(*key, n, total) for key, (n, total) in sorted(blocks.items())]
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
        block = literal(_block(at_s))
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


async def forget_history(session: AsyncSession, changes: ColumnElement[bool]) -> None:
    """Before history rows go (and their report_moves rows with them, by the foreign key): the
    stays they ended leave report_stay_blocks. `changes`: a condition on report_moves."""
    await _move_stay_blocks(session, changes, -1)


def mark_stale(session: AsyncSession, contact_ids: Iterable[int | None]) -> None:
    """Remember contacts whose report rows a bulk write made stale; `refresh_stale` brings them
    in step once for the whole unit of work (an import touches a contact in several
    statements, and recomputing once is cheaper than once per statement)."""
    stale: set[int] = session.info.setdefault(STALE, set())
    stale.update(i for i in contact_ids if i is not None)


def created(session: AsyncSession, contacts: Iterable[Contact]) -> None:
    """Remember contacts inserted in bulk in this unit of work: their report rows are computed
    from what was written (with `appended`, their first history rows), without reading back."""
    fresh: dict[int, tuple[Facts, datetime, list[Change]]] = session.info.setdefault(FRESH, {})
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
        fresh[contact.id] = (facts, contact.created_at, [])


async def appended(session: AsyncSession, changes: Sequence[StageChange]) -> None:
    """History rows just added in bulk (with their ids). Contacts created in this unit of work
    get their report rows now, from what was written (worked out while the database runs the
    history's insert, in a pipeline); the others are refreshed before the commit (a contact
    changed again later in the unit of work is refreshed then, rows replaced)."""
    contact_rows, move_rows, stale = _rows_appended(session, changes, await categories(session))
    await _insert(session, contact_rows, move_rows)
    await _append_or_refresh(session, changes, stale)


def _rows_appended(
    session: AsyncSession, changes: Sequence[StageChange], known: Categories
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[int]]:
    """The report rows of the contacts created in this unit of work that `changes` belong to,
    and the other contacts the changes belong to."""
    fresh: dict[int, tuple[Facts, datetime, list[Change]]] = session.info.get(FRESH, {})
    stale = []
    done: set[int] = set()
    seconds_of = cache(epoch_seconds)
    # In history order, to the microsecond, when a batch holds several rows of a contact.
    once_each = len({change.contact_id for change in changes}) == len(changes)
    for change in changes if once_each else sorted(changes, key=attrgetter("at", "id")):
        assert change.id is not None
        item = fresh.get(change.contact_id)
        if item is None:
            stale.append(change.contact_id)
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
    contact_rows, move_rows = _rows_of_fresh([fresh.pop(i) for i in done], known)
    return contact_rows, move_rows, stale


async def _append_or_refresh(
    session: AsyncSession, changes: Sequence[StageChange], contact_ids: list[int]
) -> None:
    """The history rows of these contacts go at the end of their report rows set-based, unless
    a contact has several of them, or one made by a person (a response): those are refreshed."""
    if not contact_ids:
        return
    already: set[int] = session.info.setdefault(STALE, set())
    counts = Counter(contact_ids)
    appending = {
        c.contact_id: c
        for c in changes
        if c.id is not None
        and counts.get(c.contact_id) == 1
        and c.source is not Source.MANUAL
        and c.contact_id not in already
    }
    mark_stale(session, (i for i in contact_ids if i not in appending))
    # Rows of one time (an import's own, most often) are appended with that time as a constant:
    # the database would otherwise work out the seconds of each row's time once per use.
    by_time: dict[datetime | None, list[int]] = {}
    for change in appending.values():
        by_time.setdefault(change.at, []).append(change.id or 0)
    if len(by_time) > FEW_TIMES:
        by_time = {None: [i for ids in by_time.values() for i in ids]}
    for at, rows in by_time.items():
        for start in range(0, len(rows), CHUNK):
            await _append(session, StageChangeRow.id.in_(rows[start : start + CHUNK]), at)


async def refresh_stale(session: AsyncSession) -> None:
    """Bring in step what `created`, `appended` and `mark_stale` remembered (the unit of work
    calls it before committing)."""
    fresh: dict[int, tuple[Facts, datetime, list[Change]]] = session.info.pop(FRESH, {})
    stale: set[int] = session.info.pop(STALE, set())
    await _write_fresh(session, [f for i, f in fresh.items() if i not in stale])
    if stale:
        await refresh(session, list(stale))


async def _write_fresh(
    session: AsyncSession, fresh: Sequence[tuple[Facts, datetime, list[Change]]]
) -> None:
    if fresh:
        await _insert(session, *_rows_of_fresh(fresh, await categories(session)))


def _rows_of_fresh(
    fresh: Sequence[tuple[Facts, datetime, list[Change]]], known: Categories
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    contact_rows, move_rows = [], []
    for facts, _, history in fresh:
        row, moves = rows_of(facts, history, None, known)
        contact_rows.append(row)
        move_rows += moves
    return contact_rows, move_rows


def forget(session: AsyncSession) -> None:
    """After a rollback or a commit: what was remembered is written or undone, and others may
    change the stages before the next transaction."""
    session.info.pop(STALE, None)
    session.info.pop(FRESH, None)
    session.info.pop(CATEGORIES, None)


async def recategorized(session: AsyncSession, stage_id: int) -> None:
    """After the stage's category changed: which rows enter won or lost changes for the rows
    into or out of it, and with them the previous entries and latest entries of the contacts
    that have such rows. Set-based, writing only what changes (a recategorization touches a
    few of a contact's rows, and rewriting them all would cost minutes on a million)."""
    m, rc = ReportMoveRow, ReportContactRow
    entry = _entry_sql(await categories(session), m.to_stage_id, m.from_stage_id)
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
            m.change_id == entries.c.change_id, m.prev_entry_s.is_distinct_from(entries.c.previous)
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


async def unmoved(session: AsyncSession, operation_id: int, *, rebuild: bool = False) -> set[int]:
    """Before an undo deletes a bulk move's history rows: the report rows of the contacts it
    reverts (unchanged since), whose moved row is still their latest, go back to what the move
    kept of them; the row's report_moves row goes with it (knowing the stay it ended, hence the
    row before, and the previous entry). Returns those contacts: the others are refreshed.
    `rebuild`: as for `moved_in_bulk`."""
    i, h, m, c, rc = OperationItemRow, StageChangeRow, ReportMoveRow, ContactRow, ReportContactRow
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


async def moved_in_bulk(
    session: AsyncSession,
    *,
    operation_id: int,
    after_change_id: int,
    at: datetime,
    to_stage_id: int | None,
    rebuild: bool = False,
) -> None:
    """Bring in step the contacts of a bulk move: the history rows of `operation_id` with ids
    above `after_change_id`, one per contact, all dated `at`, moving to `to_stage_id` and made
    by a system path. `rebuild`: the move is a large share of the contacts, for which the indexes
    it rewrites are created anew rather than updated (bulk.indexes_rebuilt)."""
    h = StageChangeRow
    rows = and_(h.operation_id == operation_id, h.id > after_change_id)
    new_moves = None
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has one writer at a time, holding the database from BEGIN IMMEDIATE to the
        # commit: every history row (and report_moves row) above the operation's first one is
        # one of its rows, read in key order instead of looked up one by one.
        rows = h.id > after_change_id
        new_moves = ReportMoveRow.change_id > after_change_id
    await _append(
        session,
        rows,
        at,
        new_moves=new_moves,
        to_stage_id=to_stage_id,
        one_moment=True,
        rebuilt=_MOVED_INDEXES if rebuild else (),
    )


_VARIES = object()
# The indexes of report_contacts a move rewrites: the path's, and the idle index, which loses
# each contact the move touches for the first time.
_MOVED_INDEXES = ("ix_report_contacts_path", "ix_report_contacts_idle")


async def _append(
    session: AsyncSession,
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
    dialect = session.get_bind().dialect.name
    at_s: Any = literal(epoch_seconds(at)) if at is not None else seconds(h.at, dialect)
    # After the last row for sure; within its second, its microseconds would have to be read.
    in_order = or_(rc.last_at_s.is_(None), rc.last_at_s < at_s)
    late = await session.scalars(
        select(rc.contact_id).join(h, h.contact_id == rc.contact_id).where(rows, ~in_order)
    )
    mark_stale(session, late)
    known = await categories(session)
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
