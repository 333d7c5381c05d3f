"""The report queries (docs/reports.md, "How the database keeps up"), over the report tables that
storage.reports keeps in step: `report_contacts` (a row per contact) and `report_moves` (a row per
history row).

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
  storage.reports.bucket), then, per key, only the bucket holding the middle value or values is
  sorted (`ORDER BY … LIMIT … OFFSET …`). The mean of two middles is taken in Python, so both
  databases give the same float.

An owner condition that an index does not lead with is written on `owner_id + 0`, which no index
matches, so that SQLite keeps to the index led by the period or the stage (the owner is among its
last columns) rather than one led by the owner that is not covering."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    case,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ports import ClosedOverTime, Owners, PathGroup, ReportWindow, SourceGroup
from domain.reports import Closed, OwnerFigures, StayFigures, middle_mean
from storage.models import ReportContactRow, ReportMoveRow, StageRow, UserRow
from storage.reports import MAX_BUCKET, NO_BUCKET

NO_OWNER = 0
NO_STAGE = 0
NOT_ENTRY, WON, LOST = 0, 1, 2  # report_moves.entry
LENGTH_BUCKETS = tuple(range(MAX_BUCKET + 1))
PARTS_PER_STATEMENT = 200  # SQLite joins at most 500 SELECTs in one compound statement

K = TypeVar("K", bound=Hashable)
Histogram = dict[int, int]  # length bucket -> how many values


class SqlReportRepository:
    """The report queries. With `owners` None (an admin) there is no owner condition, or the
    owners listed are everyone's, contacts without an owner (0) included."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def current_stages(
        self, owners: Owners, stage_ids: tuple[int, ...] | None = None
    ) -> dict[int | None, int]:
        r = ReportContactRow
        stages = await self._stage_keys() if stage_ids is None else stage_ids
        rows = await self._session.execute(
            select(r.stage_id, func.count())
            .where(
                r.stage_id.in_(stages),
                true() if owners is None else r.owner_id.in_(owners),
            )
            .group_by(r.stage_id)
        )
        return {_stage(stage_id): n for stage_id, n in rows.all()}

    async def cohort_paths(self, window: ReportWindow) -> list[PathGroup]:
        r = ReportContactRow
        rows = await self._session.execute(
            select(r.path, r.stage_id, func.count())
            .where(
                r.path.in_(_distinct(r.path)),
                r.stage_id.in_(await self._stage_keys()),
                *_within(r.entered_s, window),
                _owned(r.owner_id, window.owners),
            )
            .group_by(r.path, r.stage_id)
        )
        return [
            PathGroup(tuple(int(s) for s in path.split()), _stage(stage_id), n)
            for path, stage_id, n in rows.all()
        ]

    async def created_by_source(self, window: ReportWindow) -> list[SourceGroup]:
        r = ReportContactRow
        figures = (func.count(), func.sum(case((r.touched, 0), else_=1)))
        created = (*_within(r.created_s, window), _owned(r.owner_id, window.owners))
        sourced = await self._session.execute(
            select(r.source, *figures)
            .where(r.source.in_(_distinct(r.source)), *created)
            .group_by(r.source)
        )
        groups = [SourceGroup(source, n, int(idle)) for source, n, idle in sourced.all()]
        unsourced = (
            await self._session.execute(select(*figures).where(r.source.is_(None), *created))
        ).one()
        if unsourced[0]:
            groups.append(SourceGroup(None, unsourced[0], int(unsourced[1])))
        return groups

    async def closed(self, owners: Owners, bounds: Sequence[int]) -> ClosedOverTime:
        """One range count per category and bucket, all in one pass over the entries of the
        period: an entry counts in its bucket when the contact's previous entry into the same
        category is before the bucket, and in the total when it is before the period."""
        m = ReportMoveRow
        start = bounds[0]
        parts = []
        for entry in (WON, LOST):
            for n, (low, high) in enumerate(pairwise(bounds)):
                parts.append(
                    select(
                        literal_column(str(entry)),
                        literal_column(str(n)),
                        func.sum(case((_first_since(low), 1), else_=0)),
                        func.sum(case((_first_since(start), 1), else_=0)),
                    ).where(
                        m.entry == entry,
                        m.at_s >= low,
                        m.at_s < high,
                        _owned(m.owner_id, owners),
                    )
                )
        buckets = [[0, 0] for _ in range(len(bounds) - 1)]
        total = [0, 0]
        for rows in await self._union(parts):
            for entry, n, in_bucket, in_period in rows:
                buckets[n][entry - 1] = int(in_bucket or 0)
                total[entry - 1] += int(in_period or 0)
        return ClosedOverTime(Closed(*total), [Closed(*b) for b in buckets])

    async def owner_figures(self, window: ReportWindow) -> dict[int | None, OwnerFigures]:
        r, m = ReportContactRow, ReportMoveRow
        owners = await self._owner_keys(window.owners)
        created = _within(r.created_s, window)
        responses = await self._session.execute(
            select(r.owner_id, r.response_bucket, func.count())
            .where(
                r.owner_id.in_(owners),
                r.response_bucket.in_((NO_BUCKET, *LENGTH_BUCKETS)),
                *created,
            )
            .group_by(r.owner_id, r.response_bucket)
        )
        new: dict[int, int] = {}
        answered: dict[int, Histogram] = {}
        for owner, response_bucket, n in responses.all():
            new[owner] = new.get(owner, 0) + n
            if response_bucket != NO_BUCKET:
                answered.setdefault(owner, {})[response_bucket] = n

        first_entries = (*_within(m.at_s, window), _first_since(window.start))
        entries = await self._session.execute(
            select(m.entry, m.owner_id, m.age_bucket, func.count())
            .where(
                m.entry.in_((WON, LOST)),
                m.owner_id.in_(owners),
                m.age_bucket.in_(LENGTH_BUCKETS),
                *first_entries,
            )
            .group_by(m.entry, m.owner_id, m.age_bucket)
        )
        won: dict[int, Histogram] = {}
        lost: dict[int, int] = {}
        for entry, owner, age_bucket, n in entries.all():
            if entry == WON:
                won.setdefault(owner, {})[age_bucket] = n
            else:
                lost[owner] = lost.get(owner, 0) + n

        def response_times(owner: int, bucket: int) -> Select[Any]:
            return select((r.responded_s - r.created_s).label("length")).where(
                r.owner_id == owner, r.response_bucket == bucket, *created
            )

        def times_to_win(owner: int, bucket: int) -> Select[Any]:
            return select(m.age_s.label("length")).where(
                m.entry == WON, m.owner_id == owner, m.age_bucket == bucket, *first_entries
            )

        first_response = await self._medians(answered, response_times)
        to_win = await self._medians(won, times_to_win)
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
        m = ReportMoveRow
        ended = (*_within(m.at_s, window), _owned(m.owner_id, window.owners))
        rows = await self._session.execute(
            select(m.stay_stage_id, m.stay_bucket, func.count(), func.sum(m.stay_s))
            .where(
                m.stay_stage_id.in_([s for s in stage_ids if s != NO_STAGE]),
                m.stay_bucket.in_(LENGTH_BUCKETS),
                *ended,
            )
            .group_by(m.stay_stage_id, m.stay_bucket)
        )
        histograms: dict[int, Histogram] = {}
        totals: dict[int, int] = {}
        for stage_id, stay_bucket, n, total in rows.all():
            histograms.setdefault(stage_id, {})[stay_bucket] = n
            totals[stage_id] = totals.get(stage_id, 0) + int(total)

        def lengths(stage_id: int, bucket: int) -> Select[Any]:
            return select(m.stay_s.label("length")).where(
                m.stay_stage_id == stage_id, m.stay_bucket == bucket, *ended
            )

        medians = await self._medians(histograms, lengths)
        return {
            stage_id: StayFigures(sum(histogram.values()), totals[stage_id], medians[stage_id])
            for stage_id, histogram in histograms.items()
        }

    async def moves(self, window: ReportWindow) -> int:
        m = ReportMoveRow
        count = await self._session.scalar(
            select(func.sum(case((m.creation, 0), else_=1))).where(
                m.entry.in_((NOT_ENTRY, WON, LOST)),
                *_within(m.at_s, window),
                _owned(m.owner_id, window.owners),
            )
        )
        return int(count or 0)

    async def _medians(
        self, histograms: Mapping[K, Histogram], values: Callable[[K, int], Select[Any]]
    ) -> dict[K, float]:
        """Per key, the median of the values its histogram counts: the database sorts only the
        bucket (or the two buckets) holding the middle value or values and returns them.
        `values(key, bucket)` selects the values of a key in a bucket, labelled `length`."""
        keys: list[K] = []
        parts = []
        for key, histogram in histograms.items():
            for bucket, offset, limit in _middle(histogram):
                inside = values(key, bucket).subquery()
                middle = (
                    select(literal_column(str(len(keys))).label("key"), inside.c.length)
                    .order_by(inside.c.length)
                    .limit(limit)
                    .offset(offset)
                    .subquery()
                )
                parts.append(select(middle))
            keys.append(key)
        middles: dict[K, list[int]] = {}
        for rows in await self._union(parts):
            for n, length in rows:
                middles.setdefault(keys[n], []).append(int(length))
        return {key: middle_mean(min(m), max(m)) for key, m in middles.items()}

    async def _union(self, parts: Sequence[Select[Any]]) -> list[Sequence[Any]]:
        """The rows of many SELECTs, a few hundred to a statement."""
        results = []
        for first in range(0, len(parts), PARTS_PER_STATEMENT):
            chunk = parts[first : first + PARTS_PER_STATEMENT]
            statement = chunk[0] if len(chunk) == 1 else union_all(*chunk)
            results.append((await self._session.execute(statement)).all())
        return results

    async def _owner_keys(self, owners: Owners) -> tuple[int, ...]:
        """The owner ids a report lists: everyone and no owner (0) for an admin."""
        if owners is not None:
            return owners
        return (NO_OWNER, *(await self._session.scalars(select(UserRow.id))))

    async def _stage_keys(self) -> tuple[int, ...]:
        """Every stage id, archived ones included, and no stage (0)."""
        return (NO_STAGE, *(await self._session.scalars(select(StageRow.id))))


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


def _first_since(moment: int) -> ColumnElement[bool]:
    """An entry into a category whose contact had not entered it since `moment` (or ever)."""
    m = ReportMoveRow
    return or_(m.prev_entry_s.is_(None), m.prev_entry_s < moment)


def _owned(column: SQLColumnExpression[int], owners: Owners) -> ColumnElement[bool]:
    """The owner condition on an index whose owner column comes after the period, written on
    `owner_id + 0` so that SQLite keeps to that index."""
    return true() if owners is None else (column + 0).in_(owners)


def _within(column: SQLColumnExpression[Any], window: ReportWindow) -> list[ColumnElement[bool]]:
    return [column >= window.start, column < window.end]


def _owner(stored: int) -> int | None:
    return None if stored == NO_OWNER else stored


def _stage(stored: int) -> int | None:
    return None if stored == NO_STAGE else stored
