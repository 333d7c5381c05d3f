"""The report tables and the report queries (docs/reports.md, "How the database keeps up").

`report_contacts` and `report_stays` are derived from contacts, stage_changes and activities
alone. `refresh` rebuilds them for some contacts with a few set-based statements; every write
that changes a contact's history, activities, owner, source or stage calls it in the same
transaction, and `refresh(session, None)` is the recount from scratch the tests compare with.
They hold stage ids only: categories and positions are applied when a report runs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    and_,
    case,
    cast,
    delete,
    distinct,
    exists,
    extract,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.model import Source
from domain.ports import CreatedGroup, Owners, PathGroup, ReportWindow
from domain.reports import StayFigures, middle_mean
from storage.models import (
    ActivityRow,
    ContactRow,
    ReportContactRow,
    StageChangeRow,
)
from storage.models import (
    ReportMoveRow as ReportStayRow,
)

NO_OWNER = 0
CHUNK = 5000
MEDIANS_PER_STATEMENT = 200  # SQLite joins at most 500 SELECTs in one compound statement

STALE = "stale_report_contacts"  # the key of mark_stale's set in the session's info

Contacts = Sequence[int] | Select[Any] | None  # some contacts by id, a query of ids, or all


def epoch(moment: SQLColumnExpression[Any], dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a stored time, truncated, identically on both databases."""
    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", moment)), BigInteger)
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff', and strftime('%s') would round the fraction.
    return cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer)


async def refresh(session: AsyncSession, contacts: Contacts) -> None:
    """Bring the report rows of these contacts in step with their data (in chunks for long lists
    of ids, which would exceed the databases' parameter limits)."""
    dialect = session.get_bind().dialect.name
    if isinstance(contacts, Sequence):
        ids = sorted(set(contacts))
        chunks: Iterable[Contacts] = (ids[n : n + CHUNK] for n in range(0, len(ids), CHUNK))
    else:
        chunks = [contacts]
    for chunk in chunks:
        for statement in refresh_statements(dialect, chunk):
            await session.execute(statement)


def mark_stale(session: AsyncSession, contact_ids: Iterable[int | None]) -> None:
    """Remember contacts whose report rows a bulk write made stale; `refresh_stale` brings them
    in step once for the whole unit of work (an import touches a contact in several
    statements, and recomputing once per batch is cheaper than once per statement)."""
    stale: set[int] = session.info.setdefault(STALE, set())
    stale.update(i for i in contact_ids if i is not None)


async def refresh_stale(session: AsyncSession) -> None:
    """Refresh what `mark_stale` remembered (the unit of work calls it before committing)."""
    stale = session.info.pop(STALE, None)
    if stale:
        await refresh(session, list(stale))


def refresh_statements(dialect: str, contacts: Contacts) -> list[Executable]:
    """Delete and recompute the report rows of `contacts` (all of them for None)."""
    h = StageChangeRow
    c = ContactRow
    a = ActivityRow

    def among(column: SQLColumnExpression[int]) -> ColumnElement[bool]:
        return true() if contacts is None else column.in_(contacts)

    def seconds(moment: SQLColumnExpression[Any]) -> ColumnElement[int]:
        return epoch(moment, dialect)

    owner = func.coalesce(c.owner_id, NO_OWNER)
    following = func.lead(h.at).over(partition_by=h.contact_id, order_by=(h.at, h.id))
    stays = select(
        h.id,
        h.contact_id,
        owner,
        seconds(c.created_at),
        h.to_stage_id,
        h.from_stage_id,
        seconds(h.at),
        seconds(following),
    ).join(c, c.id == h.contact_id)

    # The path: each stage entered, at its last entry, concatenated in history order.
    last_entries = (
        select(
            h.contact_id,
            h.to_stage_id,
            h.at,
            h.id,
            func.row_number()
            .over(partition_by=(h.contact_id, h.to_stage_id), order_by=(h.at.desc(), h.id.desc()))
            .label("latest"),
        )
        .where(h.to_stage_id.is_not(None), among(h.contact_id))
        .subquery()
    )
    paths = (
        select(
            last_entries.c.contact_id,
            func.aggregate_strings(cast(last_entries.c.to_stage_id, String), " ")
            .over(
                partition_by=last_entries.c.contact_id,
                order_by=(last_entries.c.at, last_entries.c.id),
                rows=(None, None),
            )
            .label("path"),
        )
        .where(last_entries.c.latest == 1)
        .distinct()
        .subquery()
    )
    # Each correlated lookup appears once: SQLite evaluates a repeated one again.
    after_creation = h.at > c.created_at
    activities = select(a.at.label("at")).where(a.contact_id == c.id, a.at > c.created_at)
    manual_moves = select(h.at).where(
        h.contact_id == c.id, h.source == Source.MANUAL.value, after_creation
    )
    responses = union_all(activities.correlate(c), manual_moves.correlate(c)).subquery()
    contact_rows = (
        select(
            c.id,
            func.coalesce(c.owner_id, NO_OWNER),
            c.source,
            c.stage_id,
            seconds(c.created_at),
            seconds(
                select(func.min(h.at))
                .where(h.contact_id == c.id, h.to_stage_id.is_not(None))
                .scalar_subquery()
            ),
            func.coalesce(paths.c.path, ""),
            or_(activities.exists(), exists().where(h.contact_id == c.id, after_creation)),
            seconds(select(func.min(responses.c.at)).scalar_subquery()),
        )
        .outerjoin(paths, paths.c.contact_id == c.id)
        .where(among(c.id))
    )
    return [
        delete(ReportStayRow).where(among(ReportStayRow.contact_id)),
        insert(ReportStayRow).from_select(
            [
                "change_id",
                "contact_id",
                "owner_id",
                "created_s",
                "stage_id",
                "from_stage_id",
                "entered_s",
                "left_s",
            ],
            stays.where(among(h.contact_id)),
        ),
        delete(ReportContactRow).where(among(ReportContactRow.contact_id)),
        insert(ReportContactRow).from_select(
            [
                "contact_id",
                "owner_id",
                "source",
                "stage_id",
                "created_s",
                "entered_s",
                "path",
                "touched",
                "responded_s",
            ],
            contact_rows,
        ),
    ]


class SqlReportRepository:
    """The report queries. With `owners` None (an admin) no owner condition is written at all, so
    that the database reads the indexes led by time or stage in order, without sorting; the
    owner is the last column of those indexes, so a scoped report reads the same entries and
    keeps its own."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def current_stages(
        self, owners: Owners, stage_ids: tuple[int, ...] | None = None
    ) -> dict[int | None, int]:
        r = ReportContactRow
        among = true() if stage_ids is None else r.stage_id.in_(stage_ids)
        rows = await self._session.execute(
            select(r.stage_id, func.count())
            .where(among, _owned(r.owner_id, owners))
            .group_by(r.stage_id)
        )
        return dict(rows.all())

    async def cohort_paths(self, window: ReportWindow) -> list[PathGroup]:
        r = ReportContactRow
        rows = await self._session.execute(
            select(r.path, r.stage_id, func.count())
            .where(*_within(r.entered_s, window), _owned(r.owner_id, window.owners))
            .group_by(r.path, r.stage_id)
        )
        return [
            PathGroup(tuple(int(s) for s in path.split()), stage_id, n)
            for path, stage_id, n in rows.all()
        ]

    async def created(self, window: ReportWindow) -> list[CreatedGroup]:
        r = ReportContactRow
        rows = await self._session.execute(
            select(r.owner_id, r.source, func.count(), func.sum(case((r.touched, 0), else_=1)))
            .where(*_within(r.created_s, window), _owned(r.owner_id, window.owners))
            .group_by(r.owner_id, r.source)
        )
        return [
            CreatedGroup(_owner(owner), source, n, int(idle))
            for owner, source, n, idle in rows.all()
        ]

    async def entered(
        self, owners: Owners, into: tuple[int, ...], bounds: Sequence[int]
    ) -> list[int]:
        s = ReportStayRow
        entries = (
            _entering(into),
            s.entered_s >= bounds[0],
            s.entered_s < bounds[-1],
            _owned(s.owner_id, owners),
        )
        contacts = func.count(distinct(s.contact_id))
        if len(bounds) == 2:  # one bucket: no grouping, so nothing to sort
            return [await self._session.scalar(select(contacts).where(*entries)) or 0]
        bucket = _bucket(s.entered_s, bounds)
        rows = await self._session.execute(
            select(bucket, contacts).where(*entries).group_by(bucket)
        )
        counts = [0] * (len(bounds) - 1)
        for n, count in rows.all():
            counts[n] = count
        return counts

    async def entered_by_owner(
        self, window: ReportWindow, into: tuple[int, ...]
    ) -> dict[int | None, int]:
        s = ReportStayRow
        rows = await self._session.execute(
            select(s.owner_id, func.count(distinct(s.contact_id)))
            .where(
                _entering(into), *_within(s.entered_s, window), _owned(s.owner_id, window.owners)
            )
            .group_by(s.owner_id)
        )
        return {_owner(owner): n for owner, n in rows.all()}

    async def days_to_win(
        self, window: ReportWindow, won: tuple[int, ...], converted: Mapping[int | None, int]
    ) -> dict[int | None, float]:
        s = ReportStayRow
        wins = (_entering(won), *_within(s.entered_s, window))

        def lengths(owner_id: int) -> Select[Any]:
            return (
                select((func.min(s.entered_s) - s.created_s).label("length"))
                .where(s.owner_id == owner_id, *wins)
                .group_by(s.contact_id, s.created_s)
            )

        counts = {_stored(owner): n for owner, n in converted.items()}
        medians = await self._medians(counts, lengths)
        return {_owner(owner): m for owner, m in medians.items()}

    async def first_response(self, window: ReportWindow) -> dict[int | None, float]:
        r = ReportContactRow
        answered = (*_within(r.created_s, window), r.responded_s.is_not(None))
        counts = await self._session.execute(
            select(r.owner_id, func.count())
            .where(*answered, _owned(r.owner_id, window.owners))
            .group_by(r.owner_id)
        )

        def delays(owner_id: int) -> Select[Any]:
            delay = r.responded_s - r.created_s
            return select(delay.label("length")).where(r.owner_id == owner_id, *answered)

        medians = await self._medians(dict(counts.all()), delays)
        return {_owner(owner): m for owner, m in medians.items()}

    async def stays(
        self, window: ReportWindow, stage_ids: tuple[int, ...]
    ) -> dict[int, StayFigures]:
        s = ReportStayRow
        length = s.left_s - s.entered_s
        ended = (*_within(s.left_s, window), _owned(s.owner_id, window.owners))
        totals = (
            await self._session.execute(
                select(s.stage_id, func.count(), func.sum(length))
                .where(s.stage_id.in_(stage_ids), *ended)
                .group_by(s.stage_id)
            )
        ).all()

        def lengths(stage_id: int) -> Select[Any]:
            return select(length.label("length")).where(s.stage_id == stage_id, *ended)

        counts = {stage_id: n for stage_id, n, _ in totals if stage_id is not None}
        medians = await self._medians(counts, lengths)
        return {
            stage_id: StayFigures(n, int(total or 0), medians.get(stage_id))
            for stage_id, n, total in totals
            if stage_id is not None
        }

    async def _medians(
        self, counts: Mapping[int, int], values: Callable[[int], Select[Any]]
    ) -> dict[int, float]:
        """Per key, the median of its `counts[key]` values: the database sorts each key's values
        and returns the middle one or two (SQLite has no percentile function); their mean is
        taken here, so both databases give the same float. A sort per key, all in one
        statement, is several times quicker on SQLite than a window function over them all."""
        middles: dict[int, list[int]] = {}
        keys = [key for key, n in counts.items() if n]
        for start in range(0, len(keys), MEDIANS_PER_STATEMENT):
            parts = []
            for key in keys[start : start + MEDIANS_PER_STATEMENT]:
                n = counts[key]
                lengths = values(key).subquery()
                middle = (
                    select(literal(key).label("key"), lengths.c.length)
                    .order_by(lengths.c.length)
                    .limit(2 - n % 2)
                    .offset((n - 1) // 2)
                    .subquery()
                )
                parts.append(select(middle))
            for key, length in await self._session.execute(union_all(*parts)):
                middles.setdefault(key, []).append(length)
        return {key: middle_mean(min(m), max(m)) for key, m in middles.items()}

    async def moves(self, window: ReportWindow) -> int:
        s = ReportStayRow
        at_creation = and_(s.from_stage_id.is_(None), s.entered_s <= s.created_s)
        count = await self._session.scalar(
            select(func.count()).where(
                *_within(s.entered_s, window),
                _owned(s.owner_id, window.owners),
                ~at_creation,
            )
        )
        return int(count or 0)


def _bucket(moment: SQLColumnExpression[int], bounds: Sequence[int]) -> ColumnElement[int]:
    """The bucket of a moment: arithmetic when the buckets are equally long (days without a
    change of UTC offset), which is quicker for SQLite than comparing with each bound."""
    widths = {high - low for low, high in itertools.pairwise(bounds)}
    if len(widths) == 1:
        return (moment - bounds[0]) // widths.pop()
    inner = bounds[1:-1]
    return case(*[(moment < b, n) for n, b in enumerate(inner)], else_=len(inner))


def _owned(column: SQLColumnExpression[int], owners: Owners) -> ColumnElement[bool]:
    """The owner condition of a report over a period or over stages. Written on `owner_id + 0`,
    which no index matches, so that SQLite reads the covering index led by the period or the
    stage (the owner is its last column) instead of one led by the owner that is not."""
    return true() if owners is None else (column + 0).in_(owners)


def _owner(stored: int) -> int | None:
    return None if stored == NO_OWNER else stored


def _stored(owner: int | None) -> int:
    return NO_OWNER if owner is None else owner


def _within(column: SQLColumnExpression[Any], window: ReportWindow) -> list[ColumnElement[bool]]:
    return [column >= window.start, column < window.end]


def _entering(into: tuple[int, ...]) -> ColumnElement[bool]:
    """History rows entering one of `into` from outside them (or from no stage)."""
    s = ReportStayRow
    return and_(
        s.stage_id.in_(into),
        or_(s.from_stage_id.is_(None), s.from_stage_id.not_in(into)),
    )
