"""The report queries (docs/reports.md, "How the database keeps up"), over the report tables that
storage.report_projection keeps in step: `report_contacts` (a row per contact) and
`report_moves` (a row per history row).

Every query reads a covering index over a range without sorting anything, so that it costs about
the rows of its period and not more (SQLite sorts at about 1 µs a row, and reads an index range at
about 0.1 µs a row):

- What a report groups by leads the index, and its values are listed with IN (the stages, the
  owners, the length buckets, the distinct paths or sources), so that the database seeks each
  value and reads only the period's range under it, in the order of the groups.
- Contacts entering the won or the lost category are counted once each without DISTINCT: a row
  of report_moves that enters a category knows when the same contact last entered it before, and
  a contact entered it in [start, end) exactly when one of its entries in the range has no
  previous entry or one before `start`.
- Exact medians in two steps: counts per key and length bucket (monotone buckets of about 9 %,
  storage.report_rows.bucket), then, per key, only the bucket holding the middle value or values is
  sorted (`ORDER BY … LIMIT … OFFSET …`). The mean of two middles is taken in Python, so both
  databases give the same float.

An owner condition that an index does not lead with is written on `owner_id + 0`, which no index
matches, so that SQLite keeps to the index led by the period or the stage (the owner is among its
last columns) rather than one led by the owner that is not covering."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import cache
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    SQLColumnExpression,
    bindparam,
    case,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ports import ClosedOverTime, Owners, PathGroup, ReportWindow, SourceGroup
from domain.reports import Closed, OwnerFigures, StayFigures, middle_mean
from storage.models import ReportContactRow, ReportMoveRow, ReportStayBlockRow, StageRow, UserRow
from storage.report_projection import in_buckets
from storage.report_rows import BLOCK, NO_BUCKET

NO_OWNER = 0
NO_STAGE = 0
WON, LOST = 1, 2  # report_moves.entry
PARTS_PER_STATEMENT = 200  # SQLite joins at most 500 SELECTs in one compound statement
ENTRY_IN_SEEKS = 0.15  # reading an index entry of a range costs about 0.15 of a seek
SAMPLE = 3 * 86_400  # seconds of entries counted to estimate a period's

K = TypeVar("K", bound=Hashable)
Histogram = dict[int, int]  # length bucket -> how many values
AnySelect = Select[*tuple[Any, ...]]
Statement = AnySelect | CompoundSelect[*tuple[Any, ...]]

# The statements are built once per shape (scoped or not, how many parts) with named parameters:
# building and compiling SQLAlchemy constructs of a few hundred parts would cost as much as
# running them.
START: BindParameter[int] = bindparam("start")
END: BindParameter[int] = bindparam("end")
OWNERS: BindParameter[Any] = bindparam("owners", expanding=True)
# The entry indexes are partial (entry > 0): a query names that condition, with the literal.
ENTRIES = ReportMoveRow.__table__.c.entry > literal_column("0")


class SqlReportRepository:
    """The report queries. With `owners` None (an admin) there is no owner condition, or the
    owners listed are everyone's, contacts without an owner (0) included."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def current_stages(
        self, owners: Owners, stage_ids: tuple[int, ...] | None = None
    ) -> dict[int | None, int]:
        stages = await self._stage_keys() if stage_ids is None else stage_ids
        counts: dict[int | None, int] = {}
        for stage_id, n in await self._run(
            _current_stages(owners is not None), stages=stages, owners=owners
        ):
            counts[_stage(stage_id)] = counts.get(_stage(stage_id), 0) + n
        return counts

    async def cohort_paths(self, window: ReportWindow) -> list[PathGroup]:
        rows = await self._run(
            _cohort_paths(window.owners is not None),
            stages=await self._stage_keys(),
            **_window(window),
        )
        return [
            PathGroup(tuple(int(s) for s in path.split()), _stage(stage_id), n)
            for path, stage_id, n in rows
        ]

    async def created_by_source(self, window: ReportWindow) -> list[SourceGroup]:
        rows = await self._run(_created_by_source(window.owners is not None), **_window(window))
        return [SourceGroup(source, n) for _, source, n in rows if n]

    async def idle(self, window: ReportWindow) -> int:
        [(count,)] = await self._run(_idle(window.owners is not None), **_window(window))
        return int(count)

    async def closed(self, owners: Owners, bounds: Sequence[int]) -> ClosedOverTime:
        """One range count per category and bucket, all in one pass over the entries of the
        period: an entry counts in its bucket when the contact's previous entry into the same
        category is before the bucket, and in the total when it is before the period."""
        count = len(bounds) - 1
        buckets = [[0, 0] for _ in range(count)]
        total = [0, 0]
        params: dict[str, Any] = {"start": bounds[0], "owners": owners}
        # Some people's entries may be quicker found under each of them (the index led by the
        # owner: a seek per owner, part and age bucket, about 1 µs each) than among everyone's
        # in the period (0.1-0.2 µs an entry, estimated from a sample of three days).
        top = None
        if owners is not None:
            [(_, *tops)] = await self._run(_top_buckets(), owners=owners)
            top = max(_top(t) for t in tops)
            if top == NO_BUCKET:  # no entries at all
                return ClosedOverTime(Closed(), [Closed() for _ in range(count)])
            seeks = len(owners) * 2 * count * (top + 1)
            if seeks > ENTRY_IN_SEEKS * await self._entries_estimate(bounds[0], bounds[-1]):
                top = None
        for n, (low, high) in enumerate(pairwise(bounds)):
            params[f"low{n}"], params[f"high{n}"] = low, high
        for first in range(0, count, PARTS_PER_STATEMENT // 2):
            parts = range(first, min(count, first + PARTS_PER_STATEMENT // 2))
            statement = _closed(parts.start, parts.stop, owners is not None, top)
            for entry, n, in_bucket, in_period in await self._run(statement, **params):
                buckets[n][entry - 1] = int(in_bucket or 0)
                total[entry - 1] += int(in_period or 0)
        return ClosedOverTime(Closed(*total), [Closed(*b) for b in buckets])

    async def owner_figures(self, window: ReportWindow) -> dict[int | None, OwnerFigures]:
        within = _window(window) | {"owners": await self._owner_keys(window.owners)}
        new: dict[int, int] = {}
        answered: dict[int, Histogram] = {}
        # The owners' longest lengths, a seek each: the bucket lists stop there.
        [(response_top, *age_tops)] = await self._run(_top_buckets(), **within)
        response_buckets = _top(response_top)
        age_buckets = max(_top(t) for t in age_tops)
        for owner, response_bucket, n in await self._run(_responses(response_buckets), **within):
            new[owner] = new.get(owner, 0) + n
            if response_bucket != NO_BUCKET:
                answered.setdefault(owner, {})[response_bucket] = n
        won: dict[int, Histogram] = {}
        lost: dict[int, int] = {}
        if age_buckets != NO_BUCKET:  # else no entries at all (and IN () is not PostgreSQL)
            for owner, age_bucket, n in await self._run(_wins(age_buckets), **within):
                won.setdefault(owner, {})[age_bucket] = n
            for owner, n in await self._run(_losses(age_buckets), **within):
                if n:
                    lost[owner] = n
        first_response = await self._medians(answered, _response_times, within)
        to_win = await self._medians(won, _times_to_win, within)
        return {
            _owner(owner): OwnerFigures(
                new=new.get(owner, 0),
                converted=sum(won.get(owner, {}).values()),
                lost=lost.get(owner, 0),
                days_to_win=to_win.get(owner),
                first_response=first_response.get(owner),
            )
            for owner in {*new, *won, *lost}
        }

    async def stays(
        self, window: ReportWindow, stage_ids: tuple[int, ...]
    ) -> dict[int, StayFigures]:
        scoped = window.owners is not None
        within = _window(window)
        stages = [s for s in stage_ids if s != NO_STAGE]
        histograms: dict[int, Histogram] = {}
        totals: dict[int, int] = {}
        # The whole blocks of 32 days in the period from report_stay_blocks, its two ends from
        # report_moves.
        first_block, last_block = -(-window.start // BLOCK), window.end // BLOCK
        if window.start >= 0 and first_block < last_block:
            parts = [
                (_stays(scoped), {**within, "end": first_block * BLOCK}),
                (_stay_blocks(scoped), {**within, "first": first_block, "last": last_block}),
                (_stays(scoped), {**within, "start": last_block * BLOCK}),
            ]
        else:
            parts = [(_stays(scoped), within)]
        for statement, params in parts:
            for stage_id, stay_bucket, n, total in await self._run(
                statement, stages=stages, **params
            ):
                histogram = histograms.setdefault(stage_id, {})
                histogram[stay_bucket] = histogram.get(stay_bucket, 0) + int(n)
                totals[stage_id] = totals.get(stage_id, 0) + int(total)
        # Days whose stays all went keep rows of 0 stays: those buckets and stages count nothing.
        histograms = {
            key: counted
            for key, histogram in histograms.items()
            if (counted := {b: n for b, n in histogram.items() if n})
        }
        lengths = _scoped_lengths if scoped else _lengths
        medians = await self._medians(histograms, lengths, within)
        return {
            stage_id: StayFigures(sum(histogram.values()), totals[stage_id], medians[stage_id])
            for stage_id, histogram in histograms.items()
        }

    async def moves(self, window: ReportWindow) -> int:
        [(count,)] = await self._run(
            _moves(window.owners is not None), stages=await self._stage_keys(), **_window(window)
        )
        return int(count or 0)

    async def _medians(
        self,
        histograms: Mapping[K, Histogram],
        values: Callable[[int], Select[Any]],
        params: Mapping[str, Any],
    ) -> dict[K, float]:
        """Per key, the median of the values its histogram counts: the database sorts only the
        bucket (or the two buckets) holding the middle value or values and returns them.
        `values(n)` selects the values (labelled `length`) of key `key{n}` in bucket
        `bucket{n}`."""
        wanted = [
            (key, *middle) for key, histogram in histograms.items() for middle in _middle(histogram)
        ]
        middles: dict[K, list[int]] = {}
        for first in range(0, len(wanted), PARTS_PER_STATEMENT):
            chunk = wanted[first : first + PARTS_PER_STATEMENT]
            arguments = dict(params)
            for n, (key, bucket, offset, limit) in enumerate(chunk):
                arguments |= {f"key{n}": key, f"bucket{n}": bucket}
                arguments |= {f"offset{n}": offset, f"limit{n}": limit}
            for n, length in await self._run(_middles(values, len(chunk)), **arguments):
                middles.setdefault(chunk[n][0], []).append(int(length))
        return {key: middle_mean(min(m), max(m)) for key, m in middles.items()}

    async def _entries_estimate(self, start: int, end: int) -> int:
        """About how many entries into won or lost everyone has in [start, end), from the
        three days in its middle."""
        middle = (start + end) // 2
        low, high = max(start, middle - SAMPLE // 2), min(end, middle + SAMPLE // 2)
        [(sampled,)] = await self._run(_entries(), start=low, end=high)
        return int(sampled or 0) * (end - start) // max(high - low, 1)

    async def _run(self, statement: Statement, **params: Any) -> Sequence[Any]:
        return (await self._session.execute(statement, params)).all()

    async def _owner_keys(self, owners: Owners) -> tuple[int, ...]:
        """The owner ids a report lists: for an admin, everyone who owns a contact and no owner
        (0), found by a loose scan of the index led by the owner (a seek each)."""
        if owners is not None:
            return owners
        return tuple(await self._session.scalars(_distinct(r.owner_id)))

    async def _stage_keys(self) -> tuple[int, ...]:
        """Every stage id, archived ones included, and no stage (0)."""
        return (NO_STAGE, *(await self._session.scalars(select(StageRow.id))))


# --- the statements --------------------------------------------------------------------------

r = ReportContactRow.__table__.c
m = ReportMoveRow.__table__.c
d = ReportStayBlockRow.__table__.c


@cache
def _current_stages(scoped: bool) -> Statement:
    """Per path and current stage (the path index, in its order), to be added up per stage."""
    return (
        select(r.stage_id, func.count())
        .where(
            r.path.in_(_distinct(r.path)),
            r.stage_id.in_(bindparam("stages", expanding=True)),
            _owned(r.owner_id, scoped),
        )
        .group_by(r.path, r.stage_id)
    )


@cache
def _cohort_paths(scoped: bool) -> Statement:
    return (
        select(r.path, r.stage_id, func.count())
        .where(
            r.path.in_(_distinct(r.path)),
            r.stage_id.in_(bindparam("stages", expanding=True)),
            r.entered_s >= START,
            r.entered_s < END,
            _owned(r.owner_id, scoped),
        )
        .group_by(r.path, r.stage_id)
    )


@cache
def _created_by_source(scoped: bool) -> Statement:
    """Per source (read in source order), then the contacts without one."""
    created = (r.created_s >= START, r.created_s < END, _owned(r.owner_id, scoped))
    sourced = (
        select(literal_column("1"), r.source, func.count())
        .where(r.source.in_(_distinct(r.source)), *created)
        .group_by(r.source)
    )
    unsourced: AnySelect = select(literal_column("2"), null(), func.count()).where(
        r.source.is_(None), *created
    )
    return union_all(sourced, unsourced)


@cache
def _idle(scoped: bool) -> Statement:
    """Contacts never touched since their creation: the partial index of them, which SQLite
    and PostgreSQL use when the condition is written as in the index."""
    return select(func.count()).where(
        text("NOT report_contacts.touched"),
        r.created_s >= START,
        r.created_s < END,
        _owned(r.owner_id, scoped),
    )


@cache
def _closed(first: int, stop: int, scoped: bool, top: int | None) -> Statement:
    """Parts `first` to `stop` of the range counts; with `top`, read under each owner and age
    bucket up to it (the index led by the owner), else over the period (led by the time)."""
    owned = (
        (m.owner_id.in_(OWNERS), in_buckets(m.age_bucket, top=top))
        if top is not None
        else (_owned(m.owner_id, scoped),)
    )
    parts: list[AnySelect] = [
        select(
            literal_column(str(entry)),
            literal_column(str(n)),
            func.sum(case((_first_since(bindparam(f"low{n}")), 1), else_=0)),
            func.sum(case((_first_since(START), 1), else_=0)),
        ).where(
            m.entry == entry,
            ENTRIES,
            m.at_s >= bindparam(f"low{n}"),
            m.at_s < bindparam(f"high{n}"),
            *owned,
        )
        for entry in (WON, LOST)
        for n in range(first, stop)
    ]
    return union_all(*parts)


@cache
def _entries() -> Statement:
    return select(func.count()).where(
        m.entry.in_((WON, LOST)), ENTRIES, m.at_s >= START, m.at_s < END
    )


@cache
def _top_buckets() -> Statement:
    """The highest response and age buckets of the owners, each found by one seek per owner."""
    owners = select(UserRow.id.label("owner")).where(UserRow.id.in_(OWNERS))
    listed = owners.union_all(select(literal_column(str(NO_OWNER)))).subquery()
    owner = listed.c.owner
    responses = select(func.max(r.response_bucket)).where(r.owner_id == owner)
    wins = select(func.max(m.age_bucket)).where(m.entry == WON, ENTRIES, m.owner_id == owner)
    losses = select(func.max(m.age_bucket)).where(m.entry == LOST, ENTRIES, m.owner_id == owner)
    return select(
        func.max(responses.scalar_subquery()),
        func.max(wins.scalar_subquery()),
        func.max(losses.scalar_subquery()),
    ).select_from(listed)


@cache
def _responses(top: int) -> Statement:
    return (
        select(r.owner_id, r.response_bucket, func.count())
        .where(
            r.owner_id.in_(OWNERS),
            in_buckets(r.response_bucket, NO_BUCKET, top=top),
            r.created_s >= START,
            r.created_s < END,
        )
        .group_by(r.owner_id, r.response_bucket)
    )


@cache
def _wins(top: int) -> Statement:
    """Per owner and length bucket (time from creation), the contacts' first entries into won
    within the window."""
    return (
        select(m.owner_id, m.age_bucket, func.count())
        .where(*_first_entries(WON, m.owner_id.in_(OWNERS), top))
        .group_by(m.owner_id, m.age_bucket)
    )


@cache
def _losses(top: int) -> Statement:
    """Per owner, the contacts that entered lost within the window: a count per owner (a
    correlated subquery) rather than a GROUP BY, which costs SQLite twice as much a row."""
    listed = (
        select(UserRow.id.label("owner"))
        .where(UserRow.id.in_(OWNERS))
        .union_all(
            select(literal_column(str(NO_OWNER))).where(literal_column(str(NO_OWNER)).in_(OWNERS))
        )
        .subquery()
    )
    counted = select(func.count()).where(*_first_entries(LOST, m.owner_id == listed.c.owner, top))
    return select(listed.c.owner, counted.scalar_subquery()).select_from(listed)


def _first_entries(entry: int, owner: ColumnElement[bool], top: int) -> list[ColumnElement[bool]]:
    """The contacts' first entries into a category within the window, by the owner-led index."""
    return [
        m.entry == entry,
        ENTRIES,
        owner,
        in_buckets(m.age_bucket, top=top),
        m.at_s >= START,
        m.at_s < END,
        _first_since(START),
    ]


@cache
def _stays(scoped: bool) -> Statement:
    return (
        select(m.stay_stage_id, m.stay_bucket, func.count(), func.sum(m.stay_s))
        .where(
            m.stay_stage_id.in_(bindparam("stages", expanding=True)),
            in_buckets(m.stay_bucket),
            m.at_s >= START,
            m.at_s < END,
            _owned(m.owner_id, scoped),
        )
        .group_by(m.stay_stage_id, m.stay_bucket)
    )


@cache
def _stay_blocks(scoped: bool) -> Statement:
    return (
        select(d.stay_stage_id, d.stay_bucket, func.sum(d.n), func.sum(d.total_s))
        .where(
            d.stay_stage_id.in_(bindparam("stages", expanding=True)),
            in_buckets(d.stay_bucket),
            d.block >= bindparam("first"),
            d.block < bindparam("last"),
            _owned(d.owner_id, scoped),
        )
        .group_by(d.stay_stage_id, d.stay_bucket)
    )


@cache
def _moves(scoped: bool) -> Statement:
    """History rows in the window but those recording a creation: the stay index holds every
    row (those that end no stay under stage 0 and bucket -1)."""
    return select(func.sum(case((m.creation, 0), else_=1))).where(
        m.stay_stage_id.in_(bindparam("stages", expanding=True)),
        in_buckets(m.stay_bucket, NO_BUCKET),
        m.at_s >= START,
        m.at_s < END,
        _owned(m.owner_id, scoped),
    )


def _response_times(n: int) -> Select[Any]:
    return select((r.responded_s - r.created_s).label("length")).where(
        r.owner_id == bindparam(f"key{n}"),
        r.response_bucket == bindparam(f"bucket{n}"),
        r.created_s >= START,
        r.created_s < END,
    )


def _times_to_win(n: int) -> Select[Any]:
    return select(m.age_s.label("length")).where(
        m.entry == WON,
        ENTRIES,
        m.owner_id == bindparam(f"key{n}"),
        m.age_bucket == bindparam(f"bucket{n}"),
        m.at_s >= START,
        m.at_s < END,
        _first_since(START),
    )


def _stay_lengths(n: int, scoped: bool) -> Select[Any]:
    return select(m.stay_s.label("length")).where(
        m.stay_stage_id == bindparam(f"key{n}"),
        m.stay_bucket == bindparam(f"bucket{n}"),
        m.at_s >= START,
        m.at_s < END,
        _owned(m.owner_id, scoped),
    )


def _lengths(n: int) -> Select[Any]:
    return _stay_lengths(n, scoped=False)


def _scoped_lengths(n: int) -> Select[Any]:
    return _stay_lengths(n, scoped=True)


@cache
def _middles(values: Callable[[int], Select[Any]], parts: int) -> Statement:
    """The middle values of `parts` keys (or halves of keys), each tagged with its part."""
    selects = []
    for n in range(parts):
        inside = values(n).subquery()
        middle = (
            select(literal_column(str(n)).label("part"), inside.c.length)
            .order_by(inside.c.length)
            .limit(bindparam(f"limit{n}", type_=Integer))
            .offset(bindparam(f"offset{n}", type_=Integer))
            .subquery()
        )
        selects.append(select(middle))
    return selects[0] if parts == 1 else union_all(*selects)


def _middle(histogram: Histogram) -> list[tuple[int, int, int]]:
    """Where the middle value or values of a histogram are: (bucket, offset in it, how many)."""
    n = sum(histogram.values())
    if not n:
        return []
    wanted = sorted({(n - 1) // 2, n // 2})
    found: list[tuple[int, int, int]] = []
    before = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        inside = [p - before for p in wanted if before <= p < before + count]
        if inside:
            found.append((bucket, inside[0], len(inside)))
        before += count
    return found


def _distinct(column: Any) -> Select[Any]:
    """The distinct non-null values of an indexed column, by a loose index scan (a recursive
    query seeking each next value), far quicker than reading the index when they are few."""
    values = select(func.min(column).label("value")).cte(recursive=True)
    following = select(
        select(func.min(column)).where(column > values.c.value).scalar_subquery()
    ).where(values.c.value.is_not(None))
    values = values.union_all(following)
    return select(values.c.value).where(values.c.value.is_not(None))


def _first_since(moment: BindParameter[Any]) -> ColumnElement[bool]:
    """An entry into a category whose contact had not entered it since `moment` (or ever)."""
    return or_(m.prev_entry_s.is_(None), m.prev_entry_s < moment)


def _owned(column: SQLColumnExpression[int], scoped: bool) -> ColumnElement[bool]:
    """The owner condition on an index whose owner column comes after the period, written on
    `owner_id + 0` so that SQLite keeps to that index."""
    return (column + 0).in_(OWNERS) if scoped else true()


def _window(window: ReportWindow) -> dict[str, Any]:
    return {"start": window.start, "end": window.end, "owners": window.owners}


def _top(bucket: int | None) -> int:
    return NO_BUCKET if bucket is None else bucket


def _owner(stored: int) -> int | None:
    return None if stored == NO_OWNER else stored


def _stage(stored: int) -> int | None:
    return None if stored == NO_STAGE else stored
